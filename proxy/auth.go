package proxy

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/xdg-go/scram"

	"github.com/shardwire/shardwire/config"
)

// Authentication request codes (AuthenticationXxx messages).
const (
	authOK           = 0
	authMD5          = 5
	authSASL         = 10
	authSASLContinue = 11
	authSASLFinal    = 12
)

const scramIterations = 4096

// authenticator checks client logins against the configured users. It is
// immutable: a reload builds a new one.
type authenticator struct {
	method string
	users  map[string]config.User
	scram  map[string]scram.StoredCredentials
	// mock is used for unknown users so that a probe cannot tell a missing
	// user from a wrong password.
	mock scram.StoredCredentials
}

func newAuthenticator(cfg *config.Config) (*authenticator, error) {
	a := &authenticator{method: cfg.AuthMethod, users: map[string]config.User{}, scram: map[string]scram.StoredCredentials{}}
	for _, u := range cfg.Users {
		u, _ := cfg.User(u.Name)
		a.users[u.Name] = u
		if cfg.AuthMethod == "scram-sha-256" {
			creds, err := scramCredentials(u.Name, u.Password)
			if err != nil {
				return nil, err
			}
			a.scram[u.Name] = creds
		}
	}
	var junk [24]byte
	_, _ = rand.Read(junk[:])
	mock, err := scramCredentials("", hex.EncodeToString(junk[:]))
	if err != nil {
		return nil, err
	}
	a.mock = mock
	return a, nil
}

func scramCredentials(user, password string) (scram.StoredCredentials, error) {
	client, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		return scram.StoredCredentials{}, fmt.Errorf("scram credentials for %q: %w", user, err)
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	creds, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: scramIterations})
	if err != nil {
		return scram.StoredCredentials{}, fmt.Errorf("scram credentials for %q: %w", user, err)
	}
	return creds, nil
}

var errAuthFailed = errors.New("password authentication failed")

// authenticate runs the configured exchange on c for user. On failure the
// caller sends 28P01 and closes.
func (a *authenticator) authenticate(c *clientConn, user string) (config.User, error) {
	u, known := a.users[user]
	switch a.method {
	case "trust":
		if !known {
			return u, errAuthFailed
		}
		return u, nil
	case "md5":
		var salt [4]byte
		_, _ = rand.Read(salt[:])
		if err := c.send(appendAuth(nil, authMD5, salt[:])); err != nil {
			return u, err
		}
		typ, body, err := c.read()
		if err != nil {
			return u, err
		}
		if typ != 'p' {
			return u, fmt.Errorf("expected password message, got %q", typ)
		}
		got, _, ok := cstring(body)
		if !ok {
			return u, fmt.Errorf("malformed password message")
		}
		want := md5Response(user, u.Password, salt[:])
		if !known || subtle.ConstantTimeCompare(got, []byte(want)) != 1 {
			return u, errAuthFailed
		}
		return u, nil
	default:
		creds, ok := a.scram[user]
		if !ok {
			creds = a.mock
		}
		srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
		if err != nil {
			return u, err
		}
		conv := srv.NewConversation()
		mechs := []byte("SCRAM-SHA-256\x00\x00")
		if err := c.send(appendAuth(nil, authSASL, mechs)); err != nil {
			return u, err
		}
		typ, body, err := c.read()
		if err != nil {
			return u, err
		}
		if typ != 'p' {
			return u, fmt.Errorf("expected SASLInitialResponse, got %q", typ)
		}
		mech, rest, ok := cstring(body)
		if !ok || string(mech) != "SCRAM-SHA-256" || len(rest) < 4 {
			return u, fmt.Errorf("unsupported SASL mechanism %q", mech)
		}
		n := int(int32(uint32(rest[0])<<24 | uint32(rest[1])<<16 | uint32(rest[2])<<8 | uint32(rest[3])))
		if n < 0 || n > len(rest)-4 {
			return u, fmt.Errorf("malformed SASLInitialResponse")
		}
		serverFirst, err := conv.Step(string(rest[4 : 4+n]))
		if err != nil {
			return u, errAuthFailed
		}
		if err := c.send(appendAuth(nil, authSASLContinue, []byte(serverFirst))); err != nil {
			return u, err
		}
		typ, body, err = c.read()
		if err != nil {
			return u, err
		}
		if typ != 'p' {
			return u, fmt.Errorf("expected SASLResponse, got %q", typ)
		}
		serverFinal, err := conv.Step(string(body))
		if err != nil || !conv.Valid() || !known {
			return u, errAuthFailed
		}
		if err := c.send(appendAuth(nil, authSASLFinal, []byte(serverFinal))); err != nil {
			return u, err
		}
		return u, nil
	}
}

// md5Response is what a client answers to an md5 challenge.
func md5Response(user, password string, salt []byte) string {
	inner := md5.Sum([]byte(password + user))
	h := md5.New()
	h.Write([]byte(hex.EncodeToString(inner[:])))
	h.Write(salt)
	return "md5" + hex.EncodeToString(h.Sum(nil))
}
