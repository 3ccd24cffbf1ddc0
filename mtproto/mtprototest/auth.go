package mtprototest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"sync"

	"github.com/gotd/td/crypto/srp"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
	"github.com/gotd/td/tgtest"
)

// PremiumUser is a user account that can sign in with a phone number, the
// code Telegram "sends" and, when Password is set, a 2FA password checked
// with SRP as Telegram does (https://core.telegram.org/api/srp). Signed in,
// it uploads and posts like a bot; only a Premium account may upload a file
// of more than 4000 parts.
type PremiumUser struct {
	Phone    string
	Code     string
	Password string // empty: no 2FA
	Premium  bool
	// ID, FirstName and Username default to 5550001, "Premium", "ferry_premium".
	ID        int64
	FirstName string
	Username  string
}

// botMaxParts is the most parts Telegram takes of a file from a bot or a
// non-premium user.
const botMaxParts = 4000

// srpPrime is Telegram's 2048-bit safe prime for SRP (generator 3), the
// one account.getPassword answers with.
const srpPrime = "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F" +
	"48198A0AA7C14058229493D22530F4DBFA336F6E0AC925139543AED44CCE7C37" +
	"20FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64" +
	"2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4" +
	"A4A695811051907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754" +
	"FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4" +
	"E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F" +
	"0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B"

// userAuth is the sign-in state of the PremiumUser. It has its own lock:
// the SRP math is slow and must not hold the server's.
type userAuth struct {
	mu       sync.Mutex
	hashes   map[[8]byte]string // auth key -> phone_code_hash sent to it
	pending  map[[8]byte]bool   // code accepted, 2FA password awaited
	algo     *tg.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow
	verifier *big.Int // v = g^x mod p, what Telegram keeps of the password
	srpID    int64
	srpB     *big.Int // b of the current challenge
	srpGB    []byte   // g_b = k*v + g^b mod p, padded
	logins   int
	failures map[string]int
	sends    map[int64]bool // random ids of the user's sendMedia
}

func (s *Server) premiumUser() (PremiumUser, bool) {
	if s.opts.PremiumUser == nil {
		return PremiumUser{}, false
	}
	u := *s.opts.PremiumUser
	if u.ID == 0 {
		u.ID = 5550001
	}
	if u.FirstName == "" {
		u.FirstName = "Premium"
	}
	if u.Username == "" {
		u.Username = "ferry_premium"
	}
	return u, true
}

func (u PremiumUser) tgUser() *tg.User {
	return &tg.User{ID: u.ID, Self: true, AccessHash: u.ID * 31, FirstName: u.FirstName, Username: u.Username,
		Phone: u.Phone, Premium: u.Premium}
}

// LogOutUser ends every authorization of the PremiumUser, as a log-out
// from another device does: its sessions get 401 AUTH_KEY_UNREGISTERED.
func (s *Server) LogOutUser() {
	u, ok := s.premiumUser()
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, id := range s.authorized {
		if id == u.ID {
			delete(s.authorized, k)
		}
	}
}

// UserLogins is how many sign-ins of the PremiumUser completed.
func (s *Server) UserLogins() int {
	s.users.mu.Lock()
	defer s.users.mu.Unlock()
	return s.users.logins
}

// UserFailures counts refused sign-in steps by error (PHONE_CODE_INVALID,
// PASSWORD_HASH_INVALID, …).
func (s *Server) UserFailures(code string) int {
	s.users.mu.Lock()
	defer s.users.mu.Unlock()
	return s.users.failures[code]
}

// UserPartRequests is the number of parts the PremiumUser uploaded.
func (s *Server) UserPartRequests() int {
	u, ok := s.premiumUser()
	if !ok {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.files {
		if f.user == u.ID {
			n += f.receipts
		}
	}
	return n
}

// UserPosts are the posts the PremiumUser made.
func (s *Server) UserPosts() []Post {
	s.users.mu.Lock()
	sends := make(map[int64]bool, len(s.users.sends))
	for k := range s.users.sends {
		sends[k] = true
	}
	s.users.mu.Unlock()
	var out []Post
	for _, p := range s.Posts() {
		if sends[p.RandomID] {
			out = append(out, p)
		}
	}
	return out
}

func (s *Server) userFailed(code string) error {
	s.users.mu.Lock()
	if s.users.failures == nil {
		s.users.failures = map[string]int{}
	}
	s.users.failures[code]++
	s.users.mu.Unlock()
	return tgerr.New(400, code)
}

// onUserMessage answers what a user sign-in and a user account need, and
// refuses more than 4000 parts of a file to anyone but a premium user. It
// reports false (leaving req unread) for everything else.
func (s *Server) onUserMessage(srv *tgtest.Server, req *tgtest.Request, id uint32) (bool, error) {
	u, configured := s.premiumUser()
	uid, authorized := s.user(req)
	isUser := configured && authorized && uid == u.ID
	switch id {
	case tg.UploadSaveBigFilePartRequestTypeID:
		// file_total_parts follows the constructor, file_id and file_part.
		if raw := req.Buf.Raw(); len(raw) >= 20 && int32(binary.LittleEndian.Uint32(raw[16:20])) > botMaxParts && !(isUser && u.Premium) {
			s.count("upload.saveBigFilePart")
			return true, tgerr.New(400, "FILE_PARTS_INVALID")
		}
		return false, nil
	case tg.AuthSendCodeRequestTypeID:
		var r tg.AuthSendCodeRequest
		if err := r.Decode(req.Buf); err != nil {
			return true, err
		}
		s.count("auth.sendCode")
		return true, s.sendCode(srv, req, u, configured, &r)
	case tg.AuthSignInRequestTypeID:
		var r tg.AuthSignInRequest
		if err := r.Decode(req.Buf); err != nil {
			return true, err
		}
		s.count("auth.signIn")
		return true, s.signIn(srv, req, u, configured, &r)
	case tg.AccountGetPasswordRequestTypeID:
		var r tg.AccountGetPasswordRequest
		if err := r.Decode(req.Buf); err != nil {
			return true, err
		}
		s.count("account.getPassword")
		return true, s.getPassword(srv, req, u, configured)
	case tg.AuthCheckPasswordRequestTypeID:
		var r tg.AuthCheckPasswordRequest
		if err := r.Decode(req.Buf); err != nil {
			return true, err
		}
		s.count("auth.checkPassword")
		return true, s.checkPassword(srv, req, u, configured, &r)
	}
	if !isUser {
		return false, nil
	}
	switch id {
	case tg.UsersGetUsersRequestTypeID:
		var r tg.UsersGetUsersRequest
		if err := r.Decode(req.Buf); err != nil {
			return true, err
		}
		s.count("users.getUsers")
		var out []tg.UserClass
		for _, in := range r.ID {
			if _, self := in.(*tg.InputUserSelf); self {
				out = append(out, u.tgUser())
			} else {
				out = append(out, &tg.UserEmpty{})
			}
		}
		return true, srv.SendResult(req, &tg.UserClassVector{Elems: out})
	case tg.UsersGetFullUserRequestTypeID:
		var r tg.UsersGetFullUserRequest
		if err := r.Decode(req.Buf); err != nil {
			return true, err
		}
		s.count("users.getFullUser")
		if _, self := r.ID.(*tg.InputUserSelf); !self {
			return true, tgerr.New(400, "USER_ID_INVALID")
		}
		return true, srv.SendResult(req, &tg.UsersUserFull{FullUser: tg.UserFull{ID: u.ID}, Chats: []tg.ChatClass{}, Users: []tg.UserClass{u.tgUser()}})
	case tg.MessagesSendMediaRequestTypeID:
		var r tg.MessagesSendMediaRequest
		if err := r.Decode(req.Buf); err != nil {
			return true, err
		}
		s.users.mu.Lock()
		if s.users.sends == nil {
			s.users.sends = map[int64]bool{}
		}
		s.users.sends[r.RandomID] = true
		s.users.mu.Unlock()
		return true, s.sendMedia(srv, req, &r)
	}
	return false, nil
}

func (s *Server) sendCode(srv *tgtest.Server, req *tgtest.Request, u PremiumUser, configured bool, r *tg.AuthSendCodeRequest) error {
	if r.APIID == 0 || r.APIHash == "" {
		return tgerr.New(400, "API_ID_INVALID")
	}
	if !configured || r.PhoneNumber != u.Phone {
		return s.userFailed("PHONE_NUMBER_INVALID")
	}
	hash := hex.EncodeToString(randBytes(8))
	s.users.mu.Lock()
	if s.users.hashes == nil {
		s.users.hashes, s.users.pending = map[[8]byte]string{}, map[[8]byte]bool{}
	}
	s.users.hashes[req.Session.AuthKey.ID] = hash
	s.users.mu.Unlock()
	return srv.SendResult(req, &tg.AuthSentCode{Type: &tg.AuthSentCodeTypeApp{Length: len(u.Code)}, PhoneCodeHash: hash})
}

func (s *Server) signIn(srv *tgtest.Server, req *tgtest.Request, u PremiumUser, configured bool, r *tg.AuthSignInRequest) error {
	key := req.Session.AuthKey.ID
	s.users.mu.Lock()
	hash := s.users.hashes[key]
	s.users.mu.Unlock()
	switch {
	case !configured || r.PhoneNumber != u.Phone:
		return s.userFailed("PHONE_NUMBER_INVALID")
	case hash == "" || r.PhoneCodeHash != hash:
		return s.userFailed("PHONE_CODE_EXPIRED")
	case r.PhoneCode != u.Code:
		return s.userFailed("PHONE_CODE_INVALID")
	}
	if u.Password != "" {
		s.users.mu.Lock()
		s.users.pending[key] = true
		s.users.mu.Unlock()
		return tgerr.New(401, "SESSION_PASSWORD_NEEDED")
	}
	return s.authorizeUser(srv, req, u)
}

func (s *Server) authorizeUser(srv *tgtest.Server, req *tgtest.Request, u PremiumUser) error {
	key := req.Session.AuthKey.ID
	s.users.mu.Lock()
	delete(s.users.hashes, key)
	delete(s.users.pending, key)
	s.users.logins++
	s.users.mu.Unlock()
	s.mu.Lock()
	s.authorized[key] = u.ID
	s.mu.Unlock()
	return srv.SendResult(req, &tg.AuthAuthorization{User: u.tgUser()})
}

// srpParams returns the password's KDF parameters and verifier, made on
// first use: salt1 and salt2 random, v = g^PH2(password, salt1, salt2) mod
// p (gotd's client-side NewHash computes exactly that).
func (s *Server) srpParams(u PremiumUser) (*tg.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow, *big.Int, error) {
	if s.users.algo != nil {
		return s.users.algo, s.users.verifier, nil
	}
	p, _ := new(big.Int).SetString(srpPrime, 16)
	in := srp.Input{Salt1: randBytes(8), Salt2: randBytes(16), G: 3, P: p.Bytes()}
	v, salt1, err := srp.NewSRP(rand.Reader).NewHash([]byte(u.Password), in)
	if err != nil {
		return nil, nil, fmt.Errorf("mtprototest: srp verifier: %w", err)
	}
	s.users.algo = &tg.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow{Salt1: salt1, Salt2: in.Salt2, G: in.G, P: in.P}
	s.users.verifier = new(big.Int).SetBytes(v)
	return s.users.algo, s.users.verifier, nil
}

func pad256(n *big.Int) []byte {
	b := make([]byte, 256)
	return n.FillBytes(b)
}

func sha(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// getPassword answers with a fresh SRP challenge: B = k*v + g^b mod p with
// k = H(p | g).
func (s *Server) getPassword(srv *tgtest.Server, req *tgtest.Request, u PremiumUser, configured bool) error {
	if !configured || u.Password == "" {
		return srv.SendResult(req, &tg.AccountPassword{NewAlgo: &tg.PasswordKdfAlgoUnknown{},
			NewSecureAlgo: &tg.SecurePasswordKdfAlgoUnknown{}, SecureRandom: randBytes(256)})
	}
	s.users.mu.Lock()
	defer s.users.mu.Unlock()
	algo, v, err := s.srpParams(u)
	if err != nil {
		return err
	}
	p := new(big.Int).SetBytes(algo.P)
	g := big.NewInt(int64(algo.G))
	k := new(big.Int).SetBytes(sha(algo.P, pad256(g)))
	b := new(big.Int).SetBytes(randBytes(256))
	gb := new(big.Int).Exp(g, b, p)
	gb.Add(gb, new(big.Int).Mul(k, v)).Mod(gb, p)
	s.users.srpID, s.users.srpB, s.users.srpGB = randInt63(), b, pad256(gb)
	newAlgo := *algo
	newAlgo.Salt1 = algo.Salt1[:8]
	return srv.SendResult(req, &tg.AccountPassword{
		HasPassword: true, CurrentAlgo: algo, SRPB: s.users.srpGB, SRPID: s.users.srpID,
		NewAlgo: &newAlgo, NewSecureAlgo: &tg.SecurePasswordKdfAlgoPBKDF2HMACSHA512iter100000{Salt: randBytes(8)},
		SecureRandom: randBytes(256),
	})
}

// checkPassword verifies the client's proof: S = (A * v^u)^b mod p with
// u = H(A | B), K = H(S), and M1 = H(H(p) xor H(g) | H(salt1) | H(salt2) |
// A | B | K).
func (s *Server) checkPassword(srv *tgtest.Server, req *tgtest.Request, u PremiumUser, configured bool, r *tg.AuthCheckPasswordRequest) error {
	in, ok := r.Password.(*tg.InputCheckPasswordSRP)
	key := req.Session.AuthKey.ID
	s.users.mu.Lock()
	pending, algo, v, b, gb, id := s.users.pending[key], s.users.algo, s.users.verifier, s.users.srpB, s.users.srpGB, s.users.srpID
	s.users.mu.Unlock()
	switch {
	case !configured || !pending:
		return tgerr.New(401, "AUTH_KEY_UNREGISTERED")
	case !ok || b == nil || in.SRPID != id:
		return s.userFailed("SRP_ID_INVALID")
	}
	p := new(big.Int).SetBytes(algo.P)
	g := big.NewInt(int64(algo.G))
	a := new(big.Int).SetBytes(in.A)
	if a.Sign() <= 0 || a.Cmp(p) >= 0 {
		return s.userFailed("SRP_A_INVALID")
	}
	ga := pad256(a)
	uu := new(big.Int).SetBytes(sha(ga, gb))
	sv := new(big.Int).Exp(v, uu, p)
	sv.Mul(sv, a).Mod(sv, p).Exp(sv, b, p)
	k := sha(pad256(sv))
	hp, hg := sha(algo.P), sha(pad256(g))
	x := make([]byte, sha256.Size)
	for i := range x {
		x[i] = hp[i] ^ hg[i]
	}
	m1 := sha(x, sha(algo.Salt1), sha(algo.Salt2), ga, gb, k)
	s.users.mu.Lock()
	s.users.srpB = nil // one proof per challenge, as Telegram
	s.users.mu.Unlock()
	if !bytes.Equal(m1, in.M1) {
		return s.userFailed("PASSWORD_HASH_INVALID")
	}
	return s.authorizeUser(srv, req, u)
}
