package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/gotd/td/tg"
	"golang.org/x/term"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/mtproto"
)

const loginHelp = `usage: ferry login [--phone NUMBER]

Signs a Telegram user account in on the terminal: the phone number, the code
Telegram sends to the account's apps (or by SMS) and, when the account has
one, its 2FA password (not echoed on a terminal). Each is read from stdin, one
line each, so a script can pipe them in. The session is stored in the database
(DATABASE_URL, or the embedded one in DATA_DIR), encrypted with SESSION_KEY;
nothing is stored when the login fails.

With a premium account stored, uploads of files over 2000 MiB (up to 4000 MiB)
are made by that account: it must be able to post in CHANNEL_ID (a member with
the right to post, e.g. an admin). Without one, or when the account is not
premium, such files are refused with the reason. Running login again replaces
the stored session; a running ferry picks a new session up at its next start.

needs: API_ID, API_HASH, SESSION_KEY (MTPROTO_DC_ADDR, MTPROTO_PUBLIC_KEY for a
test server).`

// runLogin is `ferry login`.
func runLogin(ctx context.Context, logger *slog.Logger, stdin io.Reader, stdout, stderr io.Writer, args []string) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	phone := fs.String("phone", "", "phone number in international format; unset: asked on the terminal")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error() + "\n" + loginHelp}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("ferry login takes no arguments, got %q\n%s", fs.Args(), loginHelp)}
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	var missing []string
	if cfg.APIID == 0 || cfg.APIHash == "" {
		missing = append(missing, "API_ID and API_HASH (from my.telegram.org)")
	}
	if cfg.SessionKey == "" {
		missing = append(missing, "SESSION_KEY (it encrypts the stored session)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing required settings: %s", strings.Join(missing, ", "))
	}
	var key []byte
	if cfg.MTProtoPublicKey != "" {
		if key, err = os.ReadFile(cfg.MTProtoPublicKey); err != nil {
			return fmt.Errorf("read MTPROTO_PUBLIC_KEY: %w", err)
		}
	}
	d, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer d.Close()
	store, err := mtproto.NewUserSessionStore(d, cfg.SessionKey)
	if err != nil {
		return err
	}
	_, err = d.SessionGet(ctx, mtproto.UserSessionOwner)
	replacing := err == nil
	if err != nil && !errors.Is(err, db.ErrNotFound) {
		return err
	}
	ta := newTerminalAuth(stdin, stderr, *phone)
	u, err := mtproto.Login(ctx, mtproto.Options{
		APIID: cfg.APIID, APIHash: cfg.APIHash, DCAddr: cfg.MTProtoDCAddr, PublicKeyPEM: key,
		Logger: logger.With("component", "mtproto"), PoolSize: 1,
	}, store, ta)
	if err != nil {
		return fmt.Errorf("login failed, nothing was stored: %w", err)
	}
	fmt.Fprintf(stdout, "Logged in as %s, id %d.\n", loginName(u), u.ID)
	if u.Premium {
		fmt.Fprintf(stdout, "Premium: yes. Files over %d MiB, up to %d MiB, are uploaded by this account; it must be able to post in CHANNEL_ID.\n",
			mtproto.BotMaxSize>>20, mtproto.PremiumMaxSize>>20)
	} else {
		fmt.Fprintf(stdout, "Premium: no. Files over %d MiB stay refused until this account has Telegram Premium (ferry checks it when it first needs the session).\n",
			mtproto.BotMaxSize>>20)
	}
	if replacing {
		fmt.Fprintln(stdout, "The session replaces the one stored before, encrypted with SESSION_KEY.")
	} else {
		fmt.Fprintln(stdout, "The session is stored, encrypted with SESSION_KEY.")
	}
	return nil
}

func loginName(u *tg.User) string {
	name := strings.TrimSpace(u.FirstName + " " + u.LastName)
	if u.Username != "" {
		name += " (@" + u.Username + ")"
	}
	if name == "" {
		name = "an unnamed account"
	}
	return name
}

// terminalAuth asks on the terminal (prompts on stderr, answers on stdin,
// one line each); the password is not echoed when stdin is a terminal.
type terminalAuth struct {
	in     *bufio.Reader
	file   *os.File // stdin when it is a terminal
	prompt io.Writer
	phone  string
}

func newTerminalAuth(stdin io.Reader, prompt io.Writer, phone string) *terminalAuth {
	t := &terminalAuth{in: bufio.NewReader(stdin), prompt: prompt, phone: phone}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		t.file = f
	}
	return t
}

// line asks prompt and reads the answer, what names it in errors.
func (t *terminalAuth) line(prompt, what string) (string, error) {
	fmt.Fprintf(t.prompt, "%s: ", prompt)
	s, err := t.in.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	if s = strings.TrimSpace(s); s == "" {
		if err != nil {
			return "", fmt.Errorf("stdin ended before the %s was given", what)
		}
		return "", fmt.Errorf("no %s given", what)
	}
	return s, nil
}

func (t *terminalAuth) Phone(context.Context) (string, error) {
	if t.phone != "" {
		return t.phone, nil
	}
	p, err := t.line("Phone number (international format, e.g. +4915123456789)", "phone number")
	return strings.ReplaceAll(p, " ", ""), err
}

func (t *terminalAuth) Code(_ context.Context, sent *tg.AuthSentCode) (string, error) {
	where := "sent by Telegram"
	switch sent.Type.(type) {
	case *tg.AuthSentCodeTypeApp:
		where = "sent to your Telegram app"
	case *tg.AuthSentCodeTypeSMS:
		where = "sent by SMS"
	}
	return t.line("Login code ("+where+")", "login code")
}

func (t *terminalAuth) Password(context.Context) (string, error) {
	if t.file == nil {
		// A pipe: read the line as it is (Telegram does not trim passwords,
		// but a line's end is not part of one).
		fmt.Fprint(t.prompt, "2FA password: ")
		s, err := t.in.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read 2FA password: %w", err)
		}
		if s == "" {
			return "", errors.New("stdin ended before the 2FA password was given")
		}
		return strings.TrimRight(s, "\r\n"), nil
	}
	fmt.Fprint(t.prompt, "2FA password (not shown): ")
	b, err := term.ReadPassword(int(t.file.Fd()))
	fmt.Fprintln(t.prompt)
	if err != nil {
		return "", fmt.Errorf("read 2FA password: %w", err)
	}
	return string(b), nil
}
