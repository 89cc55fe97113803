package proxy

import (
	"encoding/binary"
	"slices"
	"strconv"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/shardwire/shardwire/router"
)

// preparedStmt is one protocol-level prepared statement of a client, under
// the proxy-global name every server connection knows it by. The global name
// is derived from the statement's text and parameter types, so all clients
// preparing the same statement share one server-side statement.
type preparedStmt struct {
	global string
	query  string
	// key is what a server connection's cache compares: text plus types.
	key string
	// parse is the Parse frame under the global name, built once.
	parse []byte
	// effects of running the statement on session state.
	effects queryEffects
	// read: the statement may run on a replica (analysed once, at Parse).
	read bool
	// For routing each Bind: the analysis, the literals of the text, the
	// parameter types and the statement's hints.
	an    *router.Analysis
	lits  []router.Literal
	types []uint32
	hints router.Hints
	// paramTypes is the Parse body after the query (int16 count + OIDs);
	// cmd the statement's command, for statements that span shards.
	paramTypes []byte
	cmd        router.Command
}

func newPreparedStmt(query []byte, rest []byte, an *router.Analyzer) *preparedStmt {
	// rest is the Parse body after the query: int16 count + int32 OIDs.
	h := xxhash.New()
	_, _ = h.Write(query)
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(rest)
	global := "sw_" + strconv.FormatUint(h.Sum64(), 16)
	st := &preparedStmt{global: global, query: string(query)}
	st.key = st.query + "\x00" + string(rest)
	st.parse = buildParse(nil, global, query, rest)
	if eff := analyzeQuery(st.query); eff != nil {
		st.effects = *eff
	}
	st.an, st.lits = an.Prepare(st.query)
	st.read = st.an.Class.IsRead()
	info := inspectQuery(st.query)
	st.hints = info.hints
	if info.single {
		st.cmd = info.stmt.Command
	}
	st.paramTypes = append([]byte(nil), rest...)
	n := int(binary.BigEndian.Uint16(rest))
	for i := 0; i < n; i++ {
		st.types = append(st.types, binary.BigEndian.Uint32(rest[2+4*i:]))
	}
	return st
}

func buildParse(dst []byte, name string, query []byte, rest []byte) []byte {
	dst, start := beginFrame(dst, 'P')
	dst = append(dst, name...)
	dst = append(dst, 0)
	dst = append(dst, query...)
	dst = append(dst, 0)
	dst = append(dst, rest...)
	return finishFrame(dst, start)
}

// appendCloseStatement appends Close('S', name).
func appendCloseStatement(dst []byte, name string) []byte {
	dst, start := beginFrame(dst, 'C')
	dst = append(dst, 'S')
	dst = append(dst, name...)
	dst = append(dst, 0)
	return finishFrame(dst, start)
}

// parseParseBody splits a Parse body into name, query and the parameter part.
func parseParseBody(body []byte) (name, query, rest []byte, ok bool) {
	name, r, ok := cstring(body)
	if !ok {
		return nil, nil, nil, false
	}
	query, r, ok = cstring(r)
	if !ok || len(r) < 2 {
		return nil, nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(r))
	if len(r) != 2+4*n {
		return nil, nil, nil, false
	}
	return name, query, r, true
}

// statementRegistry remembers statements some server has accepted, so a
// client's Parse of one can be answered without a server. It is bounded: past
// maxKnownStatements it starts over, which costs only a borrow per Parse.
type statementRegistry struct {
	mu   sync.RWMutex
	keys map[string]struct{}
}

const maxKnownStatements = 20000

func (r *statementRegistry) known(key string) bool {
	r.mu.RLock()
	_, ok := r.keys[key]
	r.mu.RUnlock()
	return ok
}

func (r *statementRegistry) add(key string) {
	r.mu.Lock()
	if r.keys == nil || len(r.keys) >= maxKnownStatements {
		r.keys = make(map[string]struct{})
	}
	r.keys[key] = struct{}{}
	r.mu.Unlock()
}

func (r *statementRegistry) size() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.keys)
}

// parseBindParams reads the parameter formats and values of a Bind body
// that starts after the statement name. The values alias body.
func parseBindParams(b []byte, types []uint32) (*router.BindParams, error) {
	p := &router.BindParams{}
	if err := parseBindParamsInto(p, b, types); err != nil {
		return nil, err
	}
	return p, nil
}

// parseBindParamsInto is parseBindParams into p, reusing its slices, for
// the caller that only routes with the parameters and keeps nothing.
func parseBindParamsInto(p *router.BindParams, b []byte, types []uint32) error {
	if len(b) < 2 {
		return errMalformedBind()
	}
	nf := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < 2*nf+2 {
		return errMalformedBind()
	}
	p.Types = types
	p.Formats = p.Formats[:0]
	for i := 0; i < nf; i++ {
		p.Formats = append(p.Formats, int16(binary.BigEndian.Uint16(b[2*i:])))
	}
	b = b[2*nf:]
	nv := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	p.Values = slices.Grow(p.Values[:0], nv)[:nv]
	clear(p.Values) // a NULL is left nil
	for i := 0; i < nv; i++ {
		if len(b) < 4 {
			return errMalformedBind()
		}
		n := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if n < 0 {
			continue // NULL
		}
		if n > len(b) {
			return errMalformedBind()
		}
		p.Values[i] = b[:n]
		b = b[n:]
	}
	return nil
}

func errMalformedBind() error {
	return &clientError{fatal: true, code: codeProtocolViolation, msg: "malformed Bind message"}
}
