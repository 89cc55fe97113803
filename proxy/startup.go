package proxy

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

// Startup-phase request codes.
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
	// maxStartupPacket is Postgres' own limit (MAX_STARTUP_PACKET_LENGTH).
	maxStartupPacket = 10000
	// newestMinor is the newest protocol 3.x minor version shardwire speaks.
	newestMinor = 2
)

// clientConn is a client socket with its read buffer. The buffer goes back
// to a shared pool while the client idles between transactions, so an idle
// client costs little more than its goroutine.
type clientConn struct {
	net.Conn
	r  *bufio.Reader // nil while released
	fr frameReader
	// first receives the next bytes of an idle client that waits on its
	// own goroutine; a small message (most queries) arrives whole in it,
	// so waking up costs one read. Taken from waitBuffers when first
	// needed and given back when the client is parked: 10,000 idle clients
	// would otherwise keep 2.5 MB of them.
	first *[256]byte
	pre   prefixReader
}

const clientReadBuffer = 8192

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, clientReadBuffer) }}

var waitBuffers = sync.Pool{New: func() any { return new([256]byte) }}

// putWaitBuffer gives the wait buffer back (the client is being parked),
// unless unread bytes still point into it.
func (c *clientConn) putWaitBuffer() {
	if c.first != nil && len(c.pre.pending) == 0 {
		waitBuffers.Put(c.first)
		c.first = nil
	}
}

// prefixReader yields the byte read while idle, then the socket.
type prefixReader struct {
	pending []byte
	conn    net.Conn
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		return n, nil
	}
	return p.conn.Read(b)
}

func newClientConn(c net.Conn, maxMessage int) *clientConn {
	cc := &clientConn{Conn: c}
	cc.fr.max = maxMessage
	cc.acquireReader(nil)
	return cc
}

func (c *clientConn) acquireReader(pending []byte) {
	c.pre = prefixReader{pending: pending, conn: c.Conn}
	c.r = readerPool.Get().(*bufio.Reader)
	c.r.Reset(&c.pre)
	c.fr.r = c.r
}

// releaseReader returns the read buffer to the pool if it holds nothing.
func (c *clientConn) releaseReader() {
	if c.r == nil || c.r.Buffered() > 0 || len(c.pre.pending) > 0 {
		return
	}
	c.r.Reset(nil)
	readerPool.Put(c.r)
	c.r, c.fr.r = nil, nil
}

// buffered returns how many received bytes wait to be read.
func (c *clientConn) buffered() int {
	if c.r == nil {
		return 0
	}
	return c.r.Buffered()
}

func (c *clientConn) send(b []byte) error {
	_, err := c.Conn.Write(b)
	return err
}

func (c *clientConn) read() (byte, []byte, error) {
	if c.r == nil {
		if err := c.awaitFirstByte(false); err != nil {
			return 0, nil, err
		}
	}
	return c.fr.next()
}

// awaitFirstByte waits for an idle client's next bytes and takes a read
// buffer from the pool for them. ready says the socket was just seen
// readable: the bytes go straight into the pooled buffer. Otherwise the wait
// happens in a small buffer, so that the client holds no big one meanwhile.
func (c *clientConn) awaitFirstByte(ready bool) error {
	if ready {
		c.acquireReader(nil)
		if _, err := c.r.Peek(1); err != nil {
			c.releaseReader()
			return err
		}
		return nil
	}
	if c.first == nil {
		c.first = waitBuffers.Get().(*[256]byte)
	}
	n, err := c.Conn.Read(c.first[:])
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	c.acquireReader(c.first[:n])
	return nil
}

// setConn replaces the socket (after a TLS handshake).
func (c *clientConn) setConn(nc net.Conn) {
	c.Conn = nc
	c.pre.conn = nc
	c.r.Reset(&c.pre)
}

// startupRequest is what a client asked for before authentication.
type startupRequest struct {
	cancel      bool
	cancelPID   uint32
	cancelKey   []byte
	minor       uint16
	params      map[string]string
	unsupported []string // _pq_.* options we do not know
}

// readStartup reads packets until a StartupMessage or CancelRequest, answering
// SSLRequest and GSSENCRequest on the way. It may replace c's socket by a TLS one.
func readStartup(c *clientConn, tlsConf *tls.Config) (*startupRequest, error) {
	sslDone, gssDone := false, false
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return nil, err
		}
		n := int(int32(binary.BigEndian.Uint32(hdr[:])))
		if n < 8 || n > maxStartupPacket {
			return nil, protocolError("invalid length of startup packet")
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(c.r, body); err != nil {
			return nil, err
		}
		code := binary.BigEndian.Uint32(body[:4])
		switch code {
		case codeSSLRequest:
			if sslDone {
				return nil, protocolError("SSLRequest sent twice")
			}
			sslDone = true
			if c.r.Buffered() > 0 {
				// Bytes after SSLRequest before the handshake: a MITM could
				// have injected them (CVE-2021-23214 class).
				return nil, protocolError("unexpected data after SSLRequest")
			}
			if tlsConf == nil {
				if err := c.send([]byte{'N'}); err != nil {
					return nil, err
				}
				continue
			}
			if err := c.send([]byte{'S'}); err != nil {
				return nil, err
			}
			tc := tls.Server(c.Conn, tlsConf)
			if err := tc.Handshake(); err != nil {
				return nil, fmt.Errorf("tls handshake: %w", err)
			}
			c.setConn(tc)
		case codeGSSENCRequest:
			if gssDone {
				return nil, protocolError("GSSENCRequest sent twice")
			}
			gssDone = true
			if err := c.send([]byte{'N'}); err != nil {
				return nil, err
			}
		case codeCancelRequest:
			if len(body) < 12 || len(body) > 4+4+256 {
				return nil, protocolError("invalid cancel request")
			}
			return &startupRequest{cancel: true, cancelPID: binary.BigEndian.Uint32(body[4:8]), cancelKey: append([]byte(nil), body[8:]...)}, nil
		default:
			major, minor := code>>16, uint16(code&0xffff)
			if major != 3 {
				return nil, &clientError{fatal: true, code: codeFeatureNotSupported,
					msg: fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0 to 3.%d", major, minor, newestMinor)}
			}
			req := &startupRequest{minor: minor, params: map[string]string{}}
			rest := body[4:]
			for len(rest) > 0 && rest[0] != 0 {
				k, r1, ok := cstring(rest)
				if !ok {
					return nil, protocolError("invalid startup packet layout: expected terminator as last byte")
				}
				v, r2, ok := cstring(r1)
				if !ok {
					return nil, protocolError("invalid startup packet layout: expected terminator as last byte")
				}
				key := string(k)
				if strings.HasPrefix(key, "_pq_.") {
					req.unsupported = append(req.unsupported, key)
				} else {
					req.params[key] = string(v)
				}
				rest = r2
			}
			if len(rest) != 1 {
				return nil, protocolError("invalid startup packet layout: expected terminator as last byte")
			}
			return req, nil
		}
	}
}

// negotiation returns the NegotiateProtocolVersion message the request
// needs, or nil: per PostgreSQL 18, the server answers it when the client asked
// for a newer minor version than it speaks, or for _pq_ options it does not know.
func (r *startupRequest) negotiation() []byte {
	if r.minor <= newestMinor && len(r.unsupported) == 0 {
		return nil
	}
	minor := uint32(r.minor)
	if minor > newestMinor {
		minor = newestMinor
	}
	dst, start := beginFrame(nil, 'v')
	dst = binary.BigEndian.AppendUint32(dst, minor)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.unsupported)))
	for _, o := range r.unsupported {
		dst = append(dst, o...)
		dst = append(dst, 0)
	}
	return finishFrame(dst, start)
}

// effectiveMinor is the protocol minor version in use after negotiation.
func (r *startupRequest) effectiveMinor() uint16 {
	if r.minor > newestMinor {
		return newestMinor
	}
	return r.minor
}

// clientError is an error to report to the client as an ErrorResponse.
type clientError struct {
	fatal bool
	code  string
	msg   string
}

func (e *clientError) Error() string { return e.code + ": " + e.msg }

func protocolError(msg string) error {
	return &clientError{fatal: true, code: codeProtocolViolation, msg: msg}
}

// asClientError maps any error to what the client should be told.
func asClientError(err error) *clientError {
	var ce *clientError
	if errors.As(err, &ce) {
		return ce
	}
	var tl errMessageTooLarge
	if errors.As(err, &tl) {
		return &clientError{fatal: true, code: codeProgramLimitExceeded, msg: tl.Error()}
	}
	if errors.Is(err, errBadLength) {
		return &clientError{fatal: true, code: codeProtocolViolation, msg: "invalid message length"}
	}
	return nil
}
