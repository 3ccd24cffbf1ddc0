// Package telegramtest is an in-process stand-in for the Telegram Bot API,
// for tests. There is no Telegram in the test environment, so code that
// calls the Bot API (through github.com/go-telegram/bot configured with
// bot.WithServerURL(srv.URL())) talks to this server instead. The aim is
// that a call this server accepts is one real Telegram would accept, and
// that the errors a client must handle (400, 403, 409, 429, 5xx, dropped
// connections) can be produced on demand.
//
// Typical use:
//
//	srv := telegramtest.NewServer(t)
//	info := srv.AddBot("123456:ABC-DEF")
//	b, _ := bot.New(info.Token, bot.WithServerURL(srv.URL()), bot.WithSkipGetMe())
//	... run the code under test ...
//	calls, err := srv.WaitCalls(ctx, "sendMessage", 1)
//
// # What it is faithful to
//
//   - Transport: POST or GET /bot<token>/<method> with parameters in the
//     query, multipart/form-data, application/x-www-form-urlencoded or a
//     JSON body; method names are case-insensitive; answers are
//     {"ok":true,"result":...} or {"ok":false,"error_code":N,"description":...}
//     with the same HTTP status; unknown token → 401 "Unauthorized";
//     unknown method → 404 "Not Found"; 429 carries parameters.retry_after.
//   - Text: parse_mode HTML, MarkdownV2 and legacy Markdown are parsed by
//     ports of Telegram's own parsers (tdlib's parse_html,
//     parse_markdown_v2, parse_markdown) with Telegram's error texts
//     ("Bad Request: can't parse entities: Unsupported start tag ..."),
//     leading and trailing white space is trimmed, and lengths are
//     measured after parsing in UTF-16 code units (the stricter reading
//     for text outside the Basic Multilingual Plane): text 1..4096
//     ("message text is empty", "message is too long"), captions up to
//     1024 ("message caption is too long").
//   - Messages: per-chat increasing message ids shared by all bots;
//     edit/delete of unknown messages, "message is not modified",
//     "message can't be edited" (another bot's message outside
//     channels), "there is no text in the message to edit", replies to
//     missing messages, copyMessage of missing messages.
//   - reply_markup: must be a JSON keyboard; inline buttons need text and an
//     action; callback_data 1..64 bytes (BUTTON_DATA_INVALID); URL buttons
//     need an http(s)/tg URL (BUTTON_URL_INVALID); edit methods accept
//     only inline keyboards.
//   - Files: file_ids and file_unique_ids are built in Telegram's binary
//     format (type, DC, file reference, media id, access hash; RLE and
//     base64url), so DC decoding works on them; file_ids belong to one bot
//     and another bot's file_id is rejected ("wrong file identifier/HTTP
//     URL specified"); the same file added for two bots shares its
//     file_unique_id; a Document file_id cannot be sent with sendVideo;
//     getFile refuses files over 20 MB ("file is too big"); uploads over
//     50 MB get 413; uploaded bytes can be downloaded from
//     /file/bot<token>/<file_path>.
//   - Updates: getUpdates with offset confirmation, negative offsets,
//     limit, timeout long polling, allowed_updates; 409 when a webhook is
//     set or when a newer getUpdates supersedes a waiting one. setWebhook
//     validates the URL (https, ports 80/88/443/8443), secret_token
//     (1..256 of A-Za-z0-9_-), max_connections and allowed_updates;
//     getWebhookInfo never returns the secret; with a webhook set, queued
//     updates are POSTed to it with X-Telegram-Bot-Api-Secret-Token, one
//     at a time, retried until a 2xx answer, and failures show up in
//     last_error_message.
//   - Channels whose administrators were declared with SetChatAdmins
//     refuse posts from bots that are not among them (403).
//   - Flood limits are on by default (TelegramLimits: per private chat,
//     per group or channel, per bot; sends and editMessageText count),
//     answered with 429 and retry_after as Telegram does; WithLimits
//     scales them for a test, WithoutLimits lifts them.
//
// # What it is not
//
//   - It implements only the methods listed by Methods(); others answer 404
//     although Telegram has them.
//   - It is stricter than Telegram in places, on purpose, so that sloppy
//     calls fail here rather than misbehave there: a bare '&' in HTML
//     text is an error (Telegram keeps it, or silently decodes "&lt"
//     without ';'); an inline button with two actions is an error
//     (Telegram takes the first); max_connections outside 1..100 and unknown
//     allowed_updates names are errors (Telegram clamps or ignores them);
//     URLs as media are refused because nothing is fetched.
//   - Descriptions for rarer errors are best guesses in Telegram's style,
//     not copies; code should branch on error codes and the well-known
//     descriptions only.
//   - It does not detect url/mention/hashtag entities automatically, does
//     not check that users started the bot or that a bot may delete other
//     people's messages, does not implement inline
//     messages, media groups, photos, stickers, payments, forums or
//     business connections, and the rate limits are the published rules of
//     thumb, not Telegram's real (unpublished, adaptive) flood control.
//   - Chats need no creation: positive ids are private chats, ids below
//     -1000000000000 channels, other negative ids groups (SetChat overrides).
//     Telegram would answer "chat not found" for chats the bot never saw.
//   - Messages, callback queries and file_ids the bot receives must be
//     made known to the server (PushUpdate does it; StoreMessage and
//     AddFile do it for updates delivered by other means), because only
//     then does the server accept copying, answering or sending them.
package telegramtest
