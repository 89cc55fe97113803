package health

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// kv is one keyword = value pair of a libpq connection string.
type kv struct{ key, value string }

// parseConninfo parses a libpq connection string: keyword = value pairs
// (values bare or single-quoted, with backslash escapes) or a
// postgresql:// URI, turned into the same pairs. primary_conninfo is read
// from a server, so malformed input is an error, never a panic.
func parseConninfo(s string) ([]kv, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "postgresql://") || strings.HasPrefix(t, "postgres://") {
		return parseConninfoURI(t)
	}
	var out []kv
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skip()
		if i == len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skip()
		if key == "" || i == len(s) || s[i] != '=' {
			return nil, fmt.Errorf("conninfo: missing \"=\" after %q", key)
		}
		i++
		skip()
		var b strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			for {
				if i == len(s) {
					return nil, errors.New("conninfo: unterminated quoted value")
				}
				c := s[i]
				i++
				if c == '\'' {
					break
				}
				if c == '\\' {
					if i == len(s) {
						return nil, errors.New("conninfo: unterminated quoted value")
					}
					c = s[i]
					i++
				}
				b.WriteByte(c)
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				c := s[i]
				i++
				if c == '\\' && i < len(s) {
					c = s[i]
					i++
				}
				b.WriteByte(c)
			}
		}
		out = append(out, kv{key, b.String()})
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// parseConninfoURI turns postgresql://user:pw@host:port/db?k=v into pairs.
// Hosts are kept as one "host"/"port" pair each, joined by commas, as libpq
// does; the caller replaces them anyway.
func parseConninfoURI(s string) ([]kv, error) {
	rest := s[strings.Index(s, "://")+3:]
	var out []kv
	query := ""
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, query = rest[:i], rest[i+1:]
	}
	path := ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest, path = rest[:i], rest[i+1:]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		user, pw, hasPW := strings.Cut(rest[:i], ":")
		rest = rest[i+1:]
		u, err := url.PathUnescape(user)
		if err != nil {
			return nil, fmt.Errorf("conninfo: user: %w", err)
		}
		if u != "" {
			out = append(out, kv{"user", u})
		}
		if hasPW {
			p, err := url.PathUnescape(pw)
			if err != nil {
				return nil, fmt.Errorf("conninfo: password: %w", err)
			}
			out = append(out, kv{"password", p})
		}
	}
	if rest != "" {
		var hosts, ports []string
		for _, hp := range strings.Split(rest, ",") {
			h, p := hp, ""
			if strings.HasPrefix(hp, "[") {
				end := strings.IndexByte(hp, ']')
				if end < 0 {
					return nil, fmt.Errorf("conninfo: bad host %q", hp)
				}
				h, p = hp[1:end], strings.TrimPrefix(hp[end+1:], ":")
			} else if i := strings.LastIndexByte(hp, ':'); i >= 0 {
				h, p = hp[:i], hp[i+1:]
			}
			h, err := url.PathUnescape(h)
			if err != nil {
				return nil, fmt.Errorf("conninfo: host: %w", err)
			}
			hosts, ports = append(hosts, h), append(ports, p)
		}
		out = append(out, kv{"host", strings.Join(hosts, ",")})
		if strings.Join(ports, "") != "" {
			out = append(out, kv{"port", strings.Join(ports, ",")})
		}
	}
	if path != "" {
		db, err := url.PathUnescape(path)
		if err != nil {
			return nil, fmt.Errorf("conninfo: dbname: %w", err)
		}
		out = append(out, kv{"dbname", db})
	}
	if query != "" {
		for _, p := range strings.Split(query, "&") {
			if p == "" {
				continue
			}
			k, v, ok := strings.Cut(p, "=")
			if !ok {
				return nil, fmt.Errorf("conninfo: parameter %q has no value", p)
			}
			k, err := url.QueryUnescape(k)
			if err != nil {
				return nil, fmt.Errorf("conninfo: %w", err)
			}
			v, err = url.QueryUnescape(v)
			if err != nil {
				return nil, fmt.Errorf("conninfo: %w", err)
			}
			if !validKeyword(k) {
				return nil, fmt.Errorf("conninfo: invalid parameter name %q", k)
			}
			out = append(out, kv{k, v})
		}
	}
	return out, nil
}

// formatConninfo writes pairs as a keyword = value connection string.
func formatConninfo(pairs []kv) string {
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.key)
		b.WriteByte('=')
		b.WriteString(quoteConnValue(p.value))
	}
	return b.String()
}

func quoteConnValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\f\v'\\") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// repointConninfo returns current (a replica's primary_conninfo) with its
// host and port replaced by the new primary's, keeping everything else (the
// replication user, password, sslmode, application_name). When current is
// empty or unreadable, it builds one from fallback's pairs.
func repointConninfo(current, host, port string, fallback []kv) string {
	pairs, err := parseConninfo(current)
	if err != nil || len(pairs) == 0 {
		pairs = fallback
	}
	out := []kv{{"host", host}, {"port", port}}
	for _, p := range pairs {
		switch p.key {
		case "host", "hostaddr", "port":
		default:
			out = append(out, p)
		}
	}
	return formatConninfo(out)
}

// quoteLiteral quotes s as an SQL string literal that means the same
// whatever standard_conforming_strings says.
func quoteLiteral(s string) string {
	if !strings.Contains(s, `\`) {
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// validKeyword reports whether k can be a libpq connection keyword.
func validKeyword(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
