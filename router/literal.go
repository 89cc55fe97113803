package router

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// LiteralKind says which syntax a literal constant used.
type LiteralKind uint8

// Literal kinds.
const (
	LitNumber   LiteralKind = iota // 42, 1.5, 1e10, 0x1F, 1_000
	LitString                      // 'x'
	LitEscape                      // E'x\n'
	LitNational                    // N'x'
	LitUnicode                     // U&'d\0061t\+000061' [UESCAPE 'c']
	LitDollar                      // $tag$x$tag$
	LitBits                        // B'0101'
	LitHex                         // X'1F'
)

var literalKindNames = [...]string{"Number", "String", "Escape", "National", "Unicode", "Dollar", "Bits", "Hex"}

func (k LiteralKind) String() string {
	if int(k) < len(literalKindNames) {
		return literalKindNames[k]
	}
	return "LiteralKind(?)"
}

// Literal is a constant that Normalize replaced by a placeholder:
// sql[Start:End] is its full text, quotes and prefix included.
type Literal struct {
	Kind         LiteralKind
	Unterminated bool // the input ended inside it
	Start, End   int
}

// Text returns the literal's source text.
func (l Literal) Text(sql string) string { return sql[l.Start:l.End] }

// errUnterminated is returned by Value for a literal cut off by the end of input.
var errUnterminated = errors.New("unterminated literal")

func literalOf(t Token) Literal {
	l := Literal{Start: t.Start, End: t.End, Unterminated: t.Flags&FlagUnterminated != 0}
	switch {
	case t.Kind == TokNumber:
		l.Kind = LitNumber
	case t.Kind == TokBitString && t.Flags&FlagHex != 0:
		l.Kind = LitHex
	case t.Kind == TokBitString:
		l.Kind = LitBits
	case t.Flags&FlagEscape != 0:
		l.Kind = LitEscape
	case t.Flags&FlagNational != 0:
		l.Kind = LitNational
	case t.Flags&FlagUnicode != 0:
		l.Kind = LitUnicode
	case t.Flags&FlagDollar != 0:
		l.Kind = LitDollar
	default:
		l.Kind = LitString
	}
	return l
}

// Value returns the literal's value as PostgreSQL would read it: a string's
// contents with quotes and escapes resolved (continued strings joined), a bit
// string's digits, and a number's text without underscores; hexadecimal,
// octal and binary integers that fit in 64 bits are given in decimal.
func (l Literal) Value(sql string) (string, error) {
	if l.Start < 0 || l.End > len(sql) || l.Start > l.End {
		return "", fmt.Errorf("literal [%d:%d] outside a %d-byte statement", l.Start, l.End, len(sql))
	}
	if l.Unterminated {
		return "", errUnterminated
	}
	text := sql[l.Start:l.End]
	switch l.Kind {
	case LitNumber:
		return numberValue(text), nil
	case LitString:
		return quotedValue(text, false)
	case LitNational:
		return quotedValue(text[1:], false)
	case LitEscape:
		return quotedValue(text[1:], true)
	case LitUnicode:
		return unicodeValue(text[2:])
	case LitDollar:
		i := strings.IndexByte(text[1:], '$') + 2
		return text[i : len(text)-i], nil
	case LitBits, LitHex:
		return quotedValue(text[1:], false)
	}
	return "", fmt.Errorf("unknown literal kind %d", l.Kind)
}

func numberValue(text string) string {
	if len(text) > 2 && text[0] == '0' {
		switch text[1] | 0x20 {
		case 'x', 'o', 'b':
			if v, err := strconv.ParseUint(text, 0, 64); err == nil {
				return strconv.FormatUint(v, 10)
			}
		}
	}
	if strings.IndexByte(text, '_') >= 0 {
		return strings.ReplaceAll(text, "_", "")
	}
	return text
}

// quotedValue decodes '…' (with continuations) starting at the opening quote.
func quotedValue(text string, backslash bool) (string, error) {
	// Fast path: one segment, no escapes.
	if len(text) >= 2 && text[len(text)-1] == '\'' {
		body := text[1 : len(text)-1]
		if strings.IndexByte(body, '\'') < 0 && (!backslash || strings.IndexByte(body, '\\') < 0) {
			return body, nil
		}
	}
	var b strings.Builder
	i := 1
	for i < len(text) {
		c := text[i]
		switch {
		case c == '\'' && i+1 < len(text) && text[i+1] == '\'':
			b.WriteByte('\'')
			i += 2
		case c == '\'':
			// End of a segment: continue with the next one, if any.
			k := continuation(text, i+1)
			if k < 0 {
				return b.String(), nil
			}
			i = k + 1
		case c == '\\' && backslash:
			n, err := decodeBackslash(&b, text, i)
			if err != nil {
				return "", err
			}
			i = n
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), nil
}

// decodeBackslash decodes the E'…' escape at text[i] ('\\') into b and returns
// the offset after it.
func decodeBackslash(b *strings.Builder, text string, i int) (int, error) {
	if i+1 >= len(text) {
		return 0, errUnterminated
	}
	c := text[i+1]
	switch c {
	case 'b':
		b.WriteByte('\b')
	case 'f':
		b.WriteByte('\f')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case 't':
		b.WriteByte('\t')
	case 'x':
		j, v := i+2, 0
		for j < len(text) && j < i+4 && byteClass[text[j]]&cHex != 0 {
			v = v*16 + hexVal(text[j])
			j++
		}
		if j == i+2 {
			b.WriteByte('x')
			return i + 2, nil
		}
		b.WriteByte(byte(v))
		return j, nil
	case 'u', 'U':
		width := 4
		if c == 'U' {
			width = 8
		}
		r, ok := parseHexRune(text, i+2, width)
		if !ok {
			return 0, fmt.Errorf("invalid Unicode escape at offset %d", i)
		}
		j := i + 2 + width
		if r >= 0xD800 && r <= 0xDBFF { // high surrogate: a low one must follow
			if j+1 < len(text) && text[j] == '\\' && (text[j+1] == 'u' || text[j+1] == 'U') {
				w := 4
				if text[j+1] == 'U' {
					w = 8
				}
				lo, ok := parseHexRune(text, j+2, w)
				if ok && lo >= 0xDC00 && lo <= 0xDFFF {
					r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
					j += 2 + w
				} else {
					return 0, fmt.Errorf("invalid Unicode surrogate pair at offset %d", i)
				}
			} else {
				return 0, fmt.Errorf("invalid Unicode surrogate pair at offset %d", i)
			}
		}
		if !utf8.ValidRune(r) {
			return 0, fmt.Errorf("invalid Unicode escape value at offset %d", i)
		}
		b.WriteRune(r)
		return j, nil
	default:
		if c >= '0' && c <= '7' {
			j, v := i+1, 0
			for j < len(text) && j < i+4 && text[j] >= '0' && text[j] <= '7' {
				v = v*8 + int(text[j]-'0')
				j++
			}
			b.WriteByte(byte(v))
			return j, nil
		}
		b.WriteByte(c)
	}
	return i + 2, nil
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	default:
		return int(c-'A') + 10
	}
}

func parseHexRune(text string, p, width int) (rune, bool) {
	if p+width > len(text) {
		return 0, false
	}
	var r rune
	for k := p; k < p+width; k++ {
		if byteClass[text[k]]&cHex == 0 {
			return 0, false
		}
		r = r*16 + rune(hexVal(text[k]))
	}
	return r, true
}

// unicodeValue decodes U&'…' [UESCAPE 'c'] starting at the opening quote.
func unicodeValue(text string) (string, error) {
	esc := byte('\\')
	body := text
	// The lexer includes a UESCAPE clause in the token: find where the string
	// itself ends by scanning it again.
	var lx Lexer
	lx.Reset(text)
	end, _ := lx.quotedString(1, false)
	if end < len(text) {
		lx.Reset(text[end:])
		t := lx.Next()
		for t.Kind == TokComment || t.Kind == TokIdent {
			t = lx.Next()
		}
		if e := t.Text(lx.src); len(e) != 3 {
			return "", errors.New("invalid UESCAPE clause")
		}
		esc = lx.src[t.Start+1]
		if isSpace(esc) || esc == '\'' || esc == '"' || esc == '+' || byteClass[esc]&cHex != 0 {
			return "", fmt.Errorf("invalid Unicode escape character %q", esc)
		}
		body = text[:end]
	}
	s, err := quotedValue(body, false)
	if err != nil {
		return "", err
	}
	if strings.IndexByte(s, esc) < 0 {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != esc {
			b.WriteByte(s[i])
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == esc {
			b.WriteByte(esc)
			i += 2
			continue
		}
		p, width := i+1, 4
		if i+1 < len(s) && s[i+1] == '+' {
			p, width = i+2, 6
		}
		r, ok := parseHexRune(s, p, width)
		if !ok {
			return "", fmt.Errorf("invalid Unicode escape at offset %d", i)
		}
		i = p + width
		if r >= 0xD800 && r <= 0xDBFF {
			lo, ok := rune(0), false
			if i < len(s) && s[i] == esc {
				q, w := i+1, 4
				if q < len(s) && s[q] == '+' {
					q, w = q+1, 6
				}
				lo, ok = parseHexRune(s, q, w)
				i = q + w
			}
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return "", errors.New("invalid Unicode surrogate pair")
			}
			r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
		}
		if !utf8.ValidRune(r) || r == 0 {
			return "", fmt.Errorf("invalid Unicode escape value %#x", r)
		}
		b.WriteRune(r)
	}
	return b.String(), nil
}
