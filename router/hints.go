package router

import (
	"fmt"
	"strings"
)

// Role is a routing role a hint asks for.
type Role uint8

// Roles. RoleAuto (the zero value) leaves the decision to the router.
const (
	RoleAuto Role = iota
	RolePrimary
	RoleReplica
)

func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleReplica:
		return "replica"
	}
	return "auto"
}

// ParseRole parses "primary", "replica" or "auto" (any case), the values of
// the role hint and of SET shardwire.role.
func ParseRole(s string) (Role, bool) {
	switch {
	case strings.EqualFold(s, "primary"):
		return RolePrimary, true
	case strings.EqualFold(s, "replica"):
		return RoleReplica, true
	case strings.EqualFold(s, "auto"):
		return RoleAuto, true
	}
	return RoleAuto, false
}

// Hints are the routing overrides a statement carries in comments:
//
//	/* shardwire: role=primary */ SELECT …
//	SELECT … -- shardwire: shard=s1, key=42
//
// A hint comment's text starts with "shardwire:" (any case); key=value pairs
// follow, separated by spaces or commas. Keys are role (primary, replica or
// auto), shard (a shard name) and key (a sharding-key value, in single quotes
// if it contains spaces or commas). Several hint comments in one statement
// add up. A malformed hint sets Err (the first problem found): the proxy
// should refuse the statement with that message rather than guess.
type Hints struct {
	Role   Role
	Shard  string
	Key    string
	HasKey bool  // Key was given (it may be empty: key='')
	Err    error // *HintError
}

// Any reports whether any hint was given.
func (h Hints) Any() bool {
	return h.Role != RoleAuto || h.Shard != "" || h.HasKey || h.Err != nil
}

// HintError describes a malformed shardwire hint comment.
type HintError struct {
	Hint   string // the comment's text after "shardwire:"
	Reason string
}

func (e *HintError) Error() string {
	return fmt.Sprintf("shardwire hint %q: %s", e.Hint, e.Reason)
}

// hintBody returns the text after "shardwire:" if the comment token text
// (with its delimiters) is a shardwire hint.
func hintBody(comment string) (string, bool) {
	var body string
	switch {
	case strings.HasPrefix(comment, "--"):
		body = comment[2:]
	case strings.HasPrefix(comment, "/*"):
		body = strings.TrimSuffix(comment[2:], "*/")
	default:
		return "", false
	}
	body = strings.TrimLeft(body, " \t\r\n\f\v")
	const word = "shardwire"
	if len(body) < len(word) || !eqFold(body[:len(word)], word) {
		return "", false
	}
	rest := strings.TrimLeft(body[len(word):], " \t")
	if !strings.HasPrefix(rest, ":") {
		return "", false
	}
	return strings.TrimSpace(rest[1:]), true
}

// addHint parses a comment token's text into h if it is a shardwire hint.
func (h *Hints) addHint(comment string) {
	body, ok := hintBody(comment)
	if !ok {
		return
	}
	fail := func(format string, args ...any) {
		if h.Err == nil {
			h.Err = &HintError{Hint: body, Reason: fmt.Sprintf(format, args...)}
		}
	}
	if body == "" {
		fail("no key=value pairs")
		return
	}
	for i := 0; i < len(body); {
		c := body[i]
		if c == ' ' || c == ',' || c == '\t' || c == '\n' || c == '\r' {
			i++
			continue
		}
		// key
		k := i
		for i < len(body) && body[i] != '=' && body[i] != ' ' && body[i] != ',' {
			i++
		}
		key := body[k:i]
		if i >= len(body) || body[i] != '=' {
			fail("%q is not key=value", key)
			return
		}
		i++
		// value
		var val string
		if i < len(body) && body[i] == '\'' {
			var b strings.Builder
			closed := false
			for i++; i < len(body); i++ {
				if body[i] == '\'' {
					if i+1 < len(body) && body[i+1] == '\'' {
						b.WriteByte('\'')
						i++
						continue
					}
					closed = true
					i++
					break
				}
				b.WriteByte(body[i])
			}
			if !closed {
				fail("unterminated quoted value for %s", key)
				return
			}
			val = b.String()
		} else {
			v := i
			for i < len(body) && body[i] != ' ' && body[i] != ',' && body[i] != '\t' && body[i] != '\n' && body[i] != '\r' {
				i++
			}
			val = body[v:i]
			if val == "" {
				fail("empty value for %s", key)
				return
			}
		}
		switch {
		case eqFold(key, "role"):
			r, ok := ParseRole(val)
			if !ok {
				fail("role must be primary, replica or auto, not %q", val)
				return
			}
			if h.Role != RoleAuto && r != RoleAuto && h.Role != r {
				fail("conflicting roles %s and %s", h.Role, r)
				return
			}
			h.Role = r
		case eqFold(key, "shard"):
			if h.Shard != "" && h.Shard != val {
				fail("conflicting shards %q and %q", h.Shard, val)
				return
			}
			h.Shard = val
		case eqFold(key, "key"):
			if h.HasKey && h.Key != val {
				fail("conflicting keys %q and %q", h.Key, val)
				return
			}
			h.Key, h.HasKey = val, true
		default:
			fail("unknown key %q (known: role, shard, key)", key)
			return
		}
	}
}
