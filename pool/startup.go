package pool

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// The server connection's startup and authentication are done here rather
// than with pgconn and Hijack: after a slow write during its handshake
// (more than 15 ms, as on a loaded machine), pgconn starts a background
// reader that may still be blocked reading the socket after Hijack, and it
// then swallows the first reply the proxy waits for. Doing the handshake on
// our own reader keeps a single reader of the socket from the start.

// handshake runs the startup and authentication on a fresh connection and
// returns what the server reported. The deadline of ctx bounds it.
func handshake(ctx context.Context, conn net.Conn, r *bufio.Reader, user, password, database string) (ServerInfo, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	startup := []byte{0, 0, 0, 0, 0, 3, 0, 0}
	for _, kv := range [][2]string{{"user", user}, {"database", database}} {
		startup = append(startup, kv[0]...)
		startup = append(startup, 0)
		startup = append(startup, kv[1]...)
		startup = append(startup, 0)
	}
	startup = append(startup, 0)
	binary.BigEndian.PutUint32(startup, uint32(len(startup)))
	if _, err := conn.Write(startup); err != nil {
		return ServerInfo{}, err
	}
	info := ServerInfo{Params: map[string]string{}}
	var sasl *scram.ClientConversation
	for {
		typ, body, err := readMessage(r)
		if err != nil {
			if ctx.Err() != nil {
				return ServerInfo{}, ctx.Err()
			}
			return ServerInfo{}, err
		}
		switch typ {
		case 'R':
			if len(body) < 4 {
				return ServerInfo{}, errors.New("malformed authentication request")
			}
			reply, next, err := authenticate(binary.BigEndian.Uint32(body), body[4:], user, password, sasl)
			if err != nil {
				return ServerInfo{}, err
			}
			sasl = next
			if reply != nil {
				if _, err := conn.Write(reply); err != nil {
					return ServerInfo{}, err
				}
			}
		case 'S':
			name, rest, _ := strings.Cut(string(body), "\x00")
			value, _, _ := strings.Cut(rest, "\x00")
			info.Params[name] = value
		case 'K':
			if len(body) < 8 {
				return ServerInfo{}, errors.New("malformed BackendKeyData")
			}
			info.PID = binary.BigEndian.Uint32(body)
			info.SecretKey = append([]byte(nil), body[4:]...)
		case 'E':
			var msg pgproto3.ErrorResponse
			if err := msg.Decode(body); err != nil {
				return ServerInfo{}, fmt.Errorf("malformed ErrorResponse: %w", err)
			}
			return ServerInfo{}, fmt.Errorf("server error: %w", pgconn.ErrorResponseToPgError(&msg))
		case 'Z':
			return info, nil
		case 'N', 'v':
			// A notice, or NegotiateProtocolVersion for options we did
			// not ask for: nothing to do.
		default:
			return ServerInfo{}, fmt.Errorf("unexpected message %q during startup", typ)
		}
	}
}

// authenticate answers one authentication request (code and data of an
// 'R' message). It returns the message to send, if any, and the SCRAM
// conversation in progress.
func authenticate(code uint32, data []byte, user, password string, sasl *scram.ClientConversation) ([]byte, *scram.ClientConversation, error) {
	switch code {
	case 0: // AuthenticationOk
		return nil, sasl, nil
	case 3: // cleartext password
		return passwordMessage(password), nil, nil
	case 5: // MD5: "md5" + md5(md5(password + user) + salt)
		if len(data) < 4 {
			return nil, nil, errors.New("malformed MD5 authentication request")
		}
		inner := md5.Sum([]byte(password + user))
		outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), data[:4]...))
		return passwordMessage("md5" + hex.EncodeToString(outer[:])), nil, nil
	case 10: // SASL: the mechanisms the server offers
		if !strings.Contains(string(data), "SCRAM-SHA-256\x00") {
			return nil, nil, fmt.Errorf("server offers no SASL mechanism shardwire supports (%q)", strings.ReplaceAll(strings.TrimRight(string(data), "\x00"), "\x00", ", "))
		}
		client, err := scram.SHA256.NewClient("", password, "")
		if err != nil {
			return nil, nil, fmt.Errorf("scram: %w", err)
		}
		conv := client.NewConversation()
		first, err := conv.Step("")
		if err != nil {
			return nil, nil, fmt.Errorf("scram: %w", err)
		}
		msg := []byte{'p', 0, 0, 0, 0}
		msg = append(msg, "SCRAM-SHA-256"...)
		msg = append(msg, 0)
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(first)))
		msg = append(msg, first...)
		binary.BigEndian.PutUint32(msg[1:], uint32(len(msg)-1))
		return msg, conv, nil
	case 11, 12: // SASL continue, final
		if sasl == nil {
			return nil, nil, errors.New("SASL message without a SASL exchange")
		}
		resp, err := sasl.Step(string(data))
		if err != nil {
			return nil, nil, fmt.Errorf("scram: the server's proof does not verify: %w", err)
		}
		if code == 12 {
			if !sasl.Valid() {
				return nil, nil, errors.New("scram: the server's signature does not verify")
			}
			return nil, sasl, nil
		}
		msg := []byte{'p', 0, 0, 0, 0}
		msg = append(msg, resp...)
		binary.BigEndian.PutUint32(msg[1:], uint32(len(msg)-1))
		return msg, sasl, nil
	}
	return nil, nil, fmt.Errorf("authentication method %d is not supported", code)
}

func passwordMessage(pw string) []byte {
	msg := []byte{'p', 0, 0, 0, 0}
	msg = append(msg, pw...)
	msg = append(msg, 0)
	binary.BigEndian.PutUint32(msg[1:], uint32(len(msg)-1))
	return msg
}

// readMessage reads one backend message during startup (bounded: startup
// messages are small).
func readMessage(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[1:])))
	if n < 4 || n > 1<<20 {
		return 0, nil, fmt.Errorf("bad message length %d during startup", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}
