package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// errMessageTooLarge is returned for a frame longer than the configured bound;
// nothing of its size has been allocated.
type errMessageTooLarge struct{ size, max int }

func (e errMessageTooLarge) Error() string {
	return fmt.Sprintf("message of %d bytes exceeds the limit of %d bytes", e.size, e.max)
}

var errBadLength = errors.New("invalid message length")

// frameReader reads protocol frames (type byte, int32 length, body). A
// returned body aliases either the bufio buffer or a reused scratch buffer and
// is valid only until the next call: frames are forwarded or decoded before
// the next read, never kept.
type frameReader struct {
	r       *bufio.Reader
	max     int
	scratch []byte
}

func (f *frameReader) next() (typ byte, body []byte, err error) {
	hdr, err := f.r.Peek(5)
	if err != nil {
		if len(hdr) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	typ = hdr[0]
	n := int(int32(binary.BigEndian.Uint32(hdr[1:5])))
	if n < 4 {
		return 0, nil, errBadLength
	}
	if n-4 > f.max {
		return 0, nil, errMessageTooLarge{n + 1, f.max}
	}
	total := n + 1
	if total <= f.r.Size() {
		// Zero copy: the whole frame fits in the read buffer.
		buf, err := f.r.Peek(total)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
		_, _ = f.r.Discard(total)
		return typ, buf[5:], nil
	}
	_, _ = f.r.Discard(5)
	if cap(f.scratch) < n-4 {
		f.scratch = make([]byte, n-4)
	}
	body = f.scratch[:n-4]
	if _, err := io.ReadFull(f.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	if cap(f.scratch) > 1<<20 {
		// Do not keep a huge buffer for the rest of the session.
		f.scratch = nil
	}
	return typ, body, nil
}

// buffered reports whether a whole frame of valid length is in the read
// buffer, so that next returns it without reading or failing.
func (f *frameReader) buffered() bool {
	avail := f.r.Buffered()
	if avail < 5 {
		return false
	}
	hdr, _ := f.r.Peek(5)
	n := int(int32(binary.BigEndian.Uint32(hdr[1:5])))
	return n >= 4 && n-4 <= f.max && n+1 <= avail
}

// appendFrame appends a frame with the given type and body.
func appendFrame(dst []byte, typ byte, body []byte) []byte {
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(body)+4))
	return append(dst, body...)
}

// beginFrame starts a frame whose length is patched by finishFrame.
func beginFrame(dst []byte, typ byte) ([]byte, int) {
	start := len(dst)
	return append(dst, typ, 0, 0, 0, 0), start
}

func finishFrame(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// cstring splits a NUL-terminated string off the front of b.
func cstring(b []byte) (s []byte, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}
