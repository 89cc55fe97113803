package router

import "strings"

// TokenKind classifies a lexical token of PostgreSQL SQL text.
type TokenKind uint8

// Token kinds. Keywords are TokIdent: the lexer does not know the keyword
// list, callers compare the (case-folded) text where they care.
const (
	TokEOF         TokenKind = iota
	TokIdent                 // unquoted identifier or keyword
	TokQuotedIdent           // "ident" or U&"ident"
	TokString                // 'x', E'x', N'x', U&'x', $tag$x$tag$
	TokBitString             // B'0101' or X'1F'
	TokNumber                // 42, 1.5, .5, 1e10, 0x1F, 0o17, 0b101, 1_000
	TokParam                 // $1
	TokPlaceholder           // $? (what Normalize writes for a literal)
	TokOp                    // operator: + - * / < > = ~ ! @ # % ^ & | ` ? and runs of them
	TokPunct                 // ( ) [ ] , ; : . :: := ..
	TokComment               // -- line or /* block */ comment
	TokOther                 // a byte SQL does not allow here (\, {, }, a lone $, …)
)

var tokenKindNames = [...]string{
	TokEOF:         "EOF",
	TokIdent:       "Ident",
	TokQuotedIdent: "QuotedIdent",
	TokString:      "String",
	TokBitString:   "BitString",
	TokNumber:      "Number",
	TokParam:       "Param",
	TokPlaceholder: "Placeholder",
	TokOp:          "Op",
	TokPunct:       "Punct",
	TokComment:     "Comment",
	TokOther:       "Other",
}

func (k TokenKind) String() string {
	if int(k) < len(tokenKindNames) {
		return tokenKindNames[k]
	}
	return "TokenKind(?)"
}

// Token flags refine a kind.
const (
	FlagUnterminated uint8 = 1 << iota // string, identifier or comment runs to the end of input
	FlagEscape                         // E'…': backslash escapes
	FlagNational                       // N'…'
	FlagUnicode                        // U&'…' or U&"…"
	FlagUEscape                        // the U& token includes a UESCAPE 'c' clause
	FlagDollar                         // $tag$…$tag$
	FlagHex                            // X'…' bit string
	FlagContinued                      // a string continued across a newline ('a'\n'b')
)

// Token is one lexical token: src[Start:End] is its text.
type Token struct {
	Kind  TokenKind
	Flags uint8
	Start int
	End   int
}

// Text returns the token's text in src.
func (t Token) Text(src string) string { return src[t.Start:t.End] }

// Lexer splits PostgreSQL SQL text into tokens, following the rules of
// PostgreSQL's scan.l with standard_conforming_strings = on. It never fails:
// text SQL does not allow becomes TokOther, and an unterminated string,
// quoted identifier or comment extends to the end of the input. Each call to
// Next consumes at least one byte, so a loop over Next always ends.
//
// The zero Lexer is ready to scan the empty string; use Reset to scan src.
type Lexer struct {
	src string
	pos int
}

// Reset starts scanning src from its beginning.
func (l *Lexer) Reset(src string) { l.src, l.pos = src, 0 }

// byte classes, built once. Bytes ≥ 0x80 are identifier characters, as in
// PostgreSQL (multibyte UTF-8 sequences are letters to the scanner).
const (
	cIdentStart uint8 = 1 << iota
	cIdentCont
	cDigit
	cSpace
	cOp
	cHex
)

var byteClass = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= cIdentStart | cIdentCont
		t[c-'a'+'A'] |= cIdentStart | cIdentCont
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] |= cIdentStart | cIdentCont
	}
	t['_'] |= cIdentStart | cIdentCont
	t['$'] |= cIdentCont
	for c := '0'; c <= '9'; c++ {
		t[c] |= cIdentCont | cDigit | cHex
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] |= cHex
		t[c-'a'+'A'] |= cHex
	}
	for _, c := range " \t\n\r\f\v" {
		t[c] |= cSpace
	}
	for _, c := range "~!@#^&|`?+-*/%<>=" {
		t[c] |= cOp
	}
	return t
}()

func isSpace(c byte) bool      { return byteClass[c]&cSpace != 0 }
func isIdentStart(c byte) bool { return byteClass[c]&cIdentStart != 0 }
func isIdentCont(c byte) bool  { return byteClass[c]&cIdentCont != 0 }
func isDigit(c byte) bool      { return byteClass[c]&cDigit != 0 }
func isOpChar(c byte) bool     { return byteClass[c]&cOp != 0 }

// Next returns the next token, or a TokEOF token at the end of input.
func (l *Lexer) Next() Token {
	src := l.src
	n := len(src)
	p := l.pos
	for p < n && byteClass[src[p]]&cSpace != 0 {
		p++
	}
	if p >= n {
		l.pos = n
		return Token{Kind: TokEOF, Start: n, End: n}
	}
	t := Token{Start: p}
	c := src[p]
	switch {
	case c == '-' && p+1 < n && src[p+1] == '-':
		t.Kind = TokComment
		t.End = lineEnd(src, p+2)
	case c == '/' && p+1 < n && src[p+1] == '*':
		t.Kind = TokComment
		t.End, t.Flags = blockCommentEnd(src, p)
	case c == '\'':
		t.Kind = TokString
		t.End, t.Flags = l.quotedString(p+1, false)
	case c == '"':
		t.Kind = TokQuotedIdent
		t.End, t.Flags = quotedIdentEnd(src, p+1)
	case isIdentStart(c):
		t = l.word(p)
	case isDigit(c) || (c == '.' && p+1 < n && isDigit(src[p+1])):
		t.Kind = TokNumber
		t.End = numberEnd(src, p)
	case c == '$':
		t = l.dollar(p)
	case c == '.':
		t.Kind = TokPunct
		t.End = p + 1
		if p+1 < n && src[p+1] == '.' {
			t.End = p + 2
		}
	case c == ':':
		t.Kind = TokPunct
		t.End = p + 1
		if p+1 < n && (src[p+1] == ':' || src[p+1] == '=') {
			t.End = p + 2
		}
	case isOpChar(c):
		t.Kind = TokOp
		t.End = operatorEnd(src, p)
	case c == '(' || c == ')' || c == '[' || c == ']' || c == ',' || c == ';':
		t.Kind = TokPunct
		t.End = p + 1
	default:
		t.Kind = TokOther
		t.End = p + 1
	}
	l.pos = t.End
	return t
}

// lineEnd returns the offset of the newline ending a -- comment (or n).
func lineEnd(src string, p int) int {
	for i := p; i < len(src); i++ {
		if src[i] == '\n' || src[i] == '\r' {
			return i
		}
	}
	return len(src)
}

// blockCommentEnd returns the end of the (nested) /* comment at p.
func blockCommentEnd(src string, p int) (int, uint8) {
	depth := 0
	n := len(src)
	for i := p; i < n; {
		switch {
		case src[i] == '/' && i+1 < n && src[i+1] == '*':
			depth++
			i += 2
		case src[i] == '*' && i+1 < n && src[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i, 0
			}
		default:
			i++
		}
	}
	return n, FlagUnterminated
}

// quotedString scans the body of a '…' string starting after its opening
// quote, including any continuation ('a'<newline>'b'), and returns the end
// offset. With backslash set (E'…'), a backslash escapes the next byte.
func (l *Lexer) quotedString(p int, backslash bool) (int, uint8) {
	src := l.src
	n := len(src)
	var flags uint8
	i := p
	for i < n {
		var j int
		if backslash {
			j = strings.IndexAny(src[i:], `'\`)
		} else {
			j = strings.IndexByte(src[i:], '\'')
		}
		if j < 0 {
			return n, flags | FlagUnterminated
		}
		i += j
		if src[i] == '\\' {
			i += 2
			continue
		}
		if i+1 < n && src[i+1] == '\'' {
			i += 2
			continue
		}
		// Closing quote; PostgreSQL joins a string continued after a newline.
		if k := continuation(src, i+1); k >= 0 {
			flags |= FlagContinued
			i = k + 1
			continue
		}
		return i + 1, flags
	}
	if i > n {
		i = n
	}
	return i, flags | FlagUnterminated
}

// continuation reports where a string continues after the closing quote at
// p-1: whitespace that includes a newline (and -- comments) then a quote,
// per scan.l's quotecontinue. It returns the offset of that quote, or -1.
func continuation(src string, p int) int {
	newline := false
	for i := p; i < len(src); {
		switch c := src[i]; {
		case c == ' ' || c == '\t' || c == '\f' || c == '\v':
			i++
		case c == '\n' || c == '\r':
			newline = true
			i++
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			i = lineEnd(src, i+2)
			if i == len(src) {
				return -1
			}
		case c == '\'' && newline:
			return i
		default:
			return -1
		}
	}
	return -1
}

// bitStringEnd scans B'…'/X'…' (no escapes; continuation allowed).
func bitStringEnd(src string, p int) (int, uint8) {
	var flags uint8
	for {
		j := strings.IndexByte(src[p:], '\'')
		if j < 0 {
			return len(src), flags | FlagUnterminated
		}
		p += j
		if k := continuation(src, p+1); k >= 0 {
			flags |= FlagContinued
			p = k + 1
			continue
		}
		return p + 1, flags
	}
}

// quotedIdentEnd scans a "…" identifier body ("" is a quote).
func quotedIdentEnd(src string, p int) (int, uint8) {
	for {
		j := strings.IndexByte(src[p:], '"')
		if j < 0 {
			return len(src), FlagUnterminated
		}
		p += j + 1
		if p < len(src) && src[p] == '"' {
			p++
			continue
		}
		return p, 0
	}
}

// word scans an identifier or keyword, or a prefixed literal (E'…', N'…',
// B'…', X'…', U&'…', U&"…") that starts with a letter.
func (l *Lexer) word(p int) Token {
	src := l.src
	n := len(src)
	c := src[p] | 0x20 // ASCII lower case; non-letters are never compared
	if p+1 < n && src[p+1] == '\'' {
		switch c {
		case 'e':
			end, f := l.quotedString(p+2, true)
			return Token{Kind: TokString, Flags: f | FlagEscape, Start: p, End: end}
		case 'n':
			end, f := l.quotedString(p+2, false)
			return Token{Kind: TokString, Flags: f | FlagNational, Start: p, End: end}
		case 'b':
			end, f := bitStringEnd(src, p+2)
			return Token{Kind: TokBitString, Flags: f, Start: p, End: end}
		case 'x':
			end, f := bitStringEnd(src, p+2)
			return Token{Kind: TokBitString, Flags: f | FlagHex, Start: p, End: end}
		}
	}
	if c == 'u' && p+2 < n && src[p+1] == '&' && (src[p+2] == '\'' || src[p+2] == '"') {
		var t Token
		if src[p+2] == '\'' {
			end, f := l.quotedString(p+3, false)
			t = Token{Kind: TokString, Flags: f | FlagUnicode, Start: p, End: end}
		} else {
			end, f := quotedIdentEnd(src, p+3)
			t = Token{Kind: TokQuotedIdent, Flags: f | FlagUnicode, Start: p, End: end}
		}
		if t.Flags&FlagUnterminated == 0 {
			if end := uescapeEnd(src, t.End); end > 0 {
				t.End = end
				t.Flags |= FlagUEscape
			}
		}
		return t
	}
	i := p + 1
	for i < n && byteClass[src[i]]&cIdentCont != 0 {
		i++
	}
	return Token{Kind: TokIdent, Start: p, End: i}
}

// uescapeEnd recognises an optional UESCAPE 'c' clause after a U& token
// ending at p and returns the end of the clause, or 0 if there is none. It
// scans by hand rather than with Next, which would look ahead again after
// a following U& token and make a run of them quadratic.
func uescapeEnd(src string, p int) int {
	p = skipSpaceAndComments(src, p)
	const kw = "uescape"
	if p+len(kw) > len(src) || !eqFold(src[p:p+len(kw)], kw) ||
		(p+len(kw) < len(src) && isIdentCont(src[p+len(kw)])) {
		return 0
	}
	p = skipSpaceAndComments(src, p+len(kw))
	// Exactly one character between quotes.
	if p+3 > len(src) || src[p] != '\'' || src[p+1] == '\'' || src[p+2] != '\'' {
		return 0
	}
	return p + 3
}

// skipSpaceAndComments returns the offset of the first byte at or after p
// that is not whitespace or inside a comment.
func skipSpaceAndComments(src string, p int) int {
	for p < len(src) {
		switch {
		case isSpace(src[p]):
			p++
		case src[p] == '-' && p+1 < len(src) && src[p+1] == '-':
			p = lineEnd(src, p+2)
		case src[p] == '/' && p+1 < len(src) && src[p+1] == '*':
			p, _ = blockCommentEnd(src, p)
		default:
			return p
		}
	}
	return p
}

// numberEnd scans a numeric constant at p (PostgreSQL 16 syntax: hex, octal
// and binary integers, and _ between digits). Identifier characters right
// after a number ("123abc"), which PostgreSQL 15 and later reject as
// trailing junk, are left for the next token.
func numberEnd(src string, p int) int {
	n := len(src)
	if src[p] == '0' && p+2 < n {
		var ok func(byte) bool
		switch src[p+1] | 0x20 {
		case 'x':
			ok = func(c byte) bool { return byteClass[c]&cHex != 0 }
		case 'o':
			ok = func(c byte) bool { return c >= '0' && c <= '7' }
		case 'b':
			ok = func(c byte) bool { return c == '0' || c == '1' }
		}
		if ok != nil {
			if end := digitsEnd(src, p+2, ok, true); end > p+2 {
				return end
			}
		}
	}
	i := p
	if src[i] != '.' {
		i = digitsEnd(src, i, isDigit, false)
	}
	if i < n && src[i] == '.' {
		if i+1 < n && src[i+1] == '.' {
			return i // 1..5: the integer, then ".."
		}
		i = digitsEnd(src, i+1, isDigit, false)
	}
	if i < n && (src[i]|0x20) == 'e' {
		j := i + 1
		if j < n && (src[j] == '+' || src[j] == '-') {
			j++
		}
		if j < n && isDigit(src[j]) {
			i = digitsEnd(src, j, isDigit, false)
		}
	}
	return i
}

// digitsEnd consumes digits accepted by ok, with single underscores between
// them (and, if leadingUnderscore, before the first: 0x_1F).
func digitsEnd(src string, p int, ok func(byte) bool, leadingUnderscore bool) int {
	i := p
	n := len(src)
	for i < n {
		c := src[i]
		if ok(c) {
			i++
			continue
		}
		if c == '_' && i+1 < n && ok(src[i+1]) && (i > p || leadingUnderscore) {
			i += 2
			continue
		}
		break
	}
	return i
}

// dollar scans a token starting with $: a parameter, a dollar-quoted
// string, Normalize's $? placeholder, or a lone $.
func (l *Lexer) dollar(p int) Token {
	src := l.src
	n := len(src)
	i := p + 1
	if i < n && isDigit(src[i]) {
		for i < n && isDigit(src[i]) {
			i++
		}
		return Token{Kind: TokParam, Start: p, End: i}
	}
	if i < n && src[i] == '?' {
		return Token{Kind: TokPlaceholder, Start: p, End: i + 1}
	}
	// $tag$: the tag is an identifier without $.
	if i < n && isIdentStart(src[i]) {
		i++
		for i < n && isIdentCont(src[i]) && src[i] != '$' {
			i++
		}
	}
	if i < n && src[i] == '$' {
		delim := src[p : i+1]
		body := i + 1
		if j := strings.Index(src[body:], delim); j >= 0 {
			return Token{Kind: TokString, Flags: FlagDollar, Start: p, End: body + j + len(delim)}
		}
		return Token{Kind: TokString, Flags: FlagDollar | FlagUnterminated, Start: p, End: n}
	}
	return Token{Kind: TokOther, Start: p, End: p + 1}
}

// operatorEnd scans an operator per scan.l: the longest run of operator
// characters, cut before an embedded comment start, and losing trailing + or
// - unless it contains one of ~ ! @ # ^ & | ` ? % (so that "a=-1" is
// "a", "=", "-", "1").
func operatorEnd(src string, p int) int {
	n := len(src)
	i := p
	for i < n && byteClass[src[i]]&cOp != 0 {
		if i > p && i+1 < n && ((src[i] == '-' && src[i+1] == '-') || (src[i] == '/' && src[i+1] == '*')) {
			break
		}
		i++
	}
	if i-p > 1 && (src[i-1] == '+' || src[i-1] == '-') {
		special := false
		for k := p; k < i-1; k++ {
			switch src[k] {
			case '~', '!', '@', '#', '^', '&', '|', '`', '?', '%':
				special = true
			}
		}
		if !special {
			for i-p > 1 && (src[i-1] == '+' || src[i-1] == '-') {
				i--
			}
		}
	}
	return i
}

// eqFold reports whether s equals the lower-case ASCII word kw, ignoring
// ASCII case.
func eqFold(s, kw string) bool {
	if len(s) != len(kw) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != kw[i] {
			return false
		}
	}
	return true
}
