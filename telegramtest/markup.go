package telegramtest

import (
	"encoding/json"
	"net/url"

	"github.com/go-telegram/bot/models"
)

// parseReplyMarkup validates a reply_markup parameter. Edit methods accept
// only inline keyboards (inlineOnly). It returns the inline keyboard (nil
// for other kinds or an empty keyboard) and its canonical JSON for
// "message is not modified" comparisons.
func parseReplyMarkup(raw string, inlineOnly bool) (*models.InlineKeyboardMarkup, string, *apiError) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &obj); err != nil || obj == nil {
		return nil, "", badRequest("can't parse reply keyboard markup JSON object")
	}
	if ik, ok := obj["inline_keyboard"]; ok {
		var rows [][]map[string]json.RawMessage
		if err := json.Unmarshal(ik, &rows); err != nil {
			return nil, "", badRequest("field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays")
		}
		count := 0
		for _, row := range rows {
			for _, btn := range row {
				if err := validateInlineButton(btn); err != nil {
					return nil, "", err
				}
				count++
			}
		}
		if count > 100 {
			return nil, "", badRequest("reply markup is too long")
		}
		var mk models.InlineKeyboardMarkup
		if err := json.Unmarshal(ik, &mk.InlineKeyboard); err != nil {
			return nil, "", badRequest("can't parse inline keyboard button: %v", err)
		}
		if count == 0 {
			return nil, "", nil
		}
		canon, _ := json.Marshal(&mk)
		return &mk, string(canon), nil
	}
	if inlineOnly {
		return nil, "", badRequest("inline keyboard expected")
	}
	for _, key := range []string{"keyboard", "remove_keyboard", "force_reply"} {
		v, ok := obj[key]
		if !ok {
			continue
		}
		if key == "keyboard" {
			var rows [][]json.RawMessage
			if err := json.Unmarshal(v, &rows); err != nil {
				return nil, "", badRequest("field \"keyboard\" of the ReplyKeyboardMarkup should be an Array of Arrays")
			}
		}
		return nil, "", nil
	}
	return nil, "", badRequest("can't parse reply keyboard markup JSON object")
}

// validateInlineButton checks one InlineKeyboardButton. Telegram picks the
// first action field it finds; telegramtest requires exactly one so that
// ambiguous buttons are caught. An empty copy_text ({"text":""}, which
// go-telegram/bot always sends) and pay=false count as absent.
func validateInlineButton(btn map[string]json.RawMessage) *apiError {
	var text string
	if err := json.Unmarshal(btn["text"], &text); err != nil {
		return badRequest("can't parse inline keyboard button: Field \"text\" must be of type String")
	}
	if text == "" {
		return badRequest("can't parse inline keyboard button: Field \"text\" must be non-empty")
	}
	actions := 0
	if v, ok := btn["url"]; ok {
		var u string
		if err := json.Unmarshal(v, &u); err != nil {
			return badRequest("can't parse inline keyboard button: Field \"url\" must be of type String")
		}
		if u != "" {
			pu, err := url.Parse(u)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https" && pu.Scheme != "tg") || (pu.Scheme != "tg" && pu.Host == "") {
				return badRequest("BUTTON_URL_INVALID")
			}
			actions++
		}
	}
	if v, ok := btn["callback_data"]; ok {
		var d string
		if err := json.Unmarshal(v, &d); err != nil {
			return badRequest("can't parse inline keyboard button: Field \"callback_data\" must be of type String")
		}
		if len(d) < 1 || len(d) > 64 {
			return badRequest("BUTTON_DATA_INVALID")
		}
		actions++
	}
	if v, ok := btn["copy_text"]; ok {
		var ct struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(v, &ct); err != nil {
			return badRequest("can't parse inline keyboard button: Field \"copy_text\" must be of type Object")
		}
		if ct.Text != "" {
			actions++
		}
	}
	if v, ok := btn["pay"]; ok && string(v) == "true" {
		actions++
	}
	for _, k := range []string{"login_url", "web_app", "switch_inline_query", "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "callback_game"} {
		if _, ok := btn[k]; ok {
			actions++
		}
	}
	if actions == 0 {
		return badRequest("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
	}
	if actions > 1 {
		return badRequest("can't parse inline keyboard button: exactly one of the optional fields must be used (telegramtest is stricter than Telegram here)")
	}
	return nil
}

// canonicalMarkup is the comparison form of a stored inline keyboard.
func canonicalMarkup(mk *models.InlineKeyboardMarkup) string {
	if mk == nil || len(mk.InlineKeyboard) == 0 {
		return ""
	}
	b, _ := json.Marshal(mk)
	return string(b)
}
