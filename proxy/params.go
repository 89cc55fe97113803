package proxy

import (
	"sort"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// sessionParams is a client's session state as SQL to re-apply on any server
// connection: parameter name (lower case) -> the statement that sets it. Its fingerprint is compared on every borrow, so a server
// connection is touched only when its state differs from the client's.
type sessionParams struct {
	vals map[string]string
	fp   uint64
	// shared: vals is also another sessionParams' map (the startup values),
	// copied on first write.
	shared bool
}

// startupOnly lists startup keys that are not session parameters.
var startupOnly = map[string]bool{"user": true, "database": true, "options": true, "replication": true}

func newSessionParams(startup map[string]string) (sessionParams, error) {
	p := sessionParams{vals: map[string]string{}}
	for k, v := range startup {
		if startupOnly[k] {
			continue
		}
		if !validParamName(k) {
			return p, &clientError{fatal: true, code: "42704", msg: "unrecognized configuration parameter \"" + k + "\""}
		}
		p.vals[strings.ToLower(k)] = setSQL(strings.ToLower(k), v)
	}
	// options: "-c name=value" pairs (and "--name=value"), as libpq sends PGOPTIONS.
	if opts := startup["options"]; opts != "" {
		fields := splitOptions(opts)
		for i := 0; i < len(fields); i++ {
			f := fields[i]
			var kv string
			switch {
			case f == "-c" && i+1 < len(fields):
				i++
				kv = fields[i]
			case strings.HasPrefix(f, "-c"):
				kv = f[2:]
			case strings.HasPrefix(f, "--"):
				kv = f[2:]
			default:
				return p, &clientError{fatal: true, code: codeFeatureNotSupported, msg: "unsupported startup option \"" + f + "\" (only -c name=value)"}
			}
			k, v, ok := strings.Cut(kv, "=")
			k = strings.ReplaceAll(strings.ToLower(k), "-", "_")
			if !ok || !validParamName(k) {
				return p, &clientError{fatal: true, code: "42704", msg: "invalid startup option \"" + kv + "\""}
			}
			p.vals[k] = setSQL(k, v)
		}
	}
	p.rehash()
	return p, nil
}

// splitOptions splits on spaces; a backslash escapes the next character.
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	esc := false
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\':
			esc = true
		case r == ' ' || r == '\t':
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func validParamName(k string) bool {
	if k == "" || len(k) > 63*2+1 {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// setSQL is the statement that sets a startup parameter.
func setSQL(name, value string) string {
	return "SET " + name + " = '" + strings.ReplaceAll(value, "'", "''") + "'"
}

func (p *sessionParams) own() {
	if p.shared {
		vals := make(map[string]string, len(p.vals)+1)
		for k, v := range p.vals {
			vals[k] = v
		}
		p.vals, p.shared = vals, false
	}
}

func (p *sessionParams) set(name, value string) {
	p.own()
	p.vals[name] = value
	p.rehash()
}

func (p *sessionParams) reset(name string) {
	p.own()
	delete(p.vals, name)
	p.rehash()
}

func (p *sessionParams) rehash() {
	if len(p.vals) == 0 {
		p.fp = 0
		return
	}
	keys := make([]string, 0, len(p.vals))
	for k := range p.vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	d := xxhash.New()
	for _, k := range keys {
		_, _ = d.WriteString(k)
		_, _ = d.WriteString("\x00")
		_, _ = d.WriteString(p.vals[k])
		_, _ = d.WriteString("\x00")
	}
	p.fp = d.Sum64() | 1 // never 0: 0 means "server defaults"
}

// applySQL returns the statement that brings a server connection to this
// state from any other.
func (p *sessionParams) applySQL() string {
	keys := make([]string, 0, len(p.vals))
	for k := range p.vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	// RESET ALL leaves role and session_authorization alone.
	b.WriteString("RESET ALL;RESET SESSION AUTHORIZATION;RESET ROLE")
	for _, k := range keys {
		b.WriteByte(';')
		b.WriteString(p.vals[k])
	}
	return b.String()
}

// share returns a copy of p that shares its map until either is written;
// p itself must not be written afterwards (it is the startup state).
func (p *sessionParams) share() sessionParams {
	p.shared = true
	return sessionParams{vals: p.vals, fp: p.fp, shared: true}
}

// restore makes p equal to from (RESET ALL goes back to startup values).
func (p *sessionParams) restore(from *sessionParams) {
	p.vals, p.fp, p.shared = from.vals, from.fp, true
}
