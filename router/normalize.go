package router

// Placeholder is what Normalize writes in place of each literal constant.
// PostgreSQL rejects "$?" outside strings, so no valid statement's own text
// contains it and a shape never confuses a literal with a real $n parameter.
const Placeholder = "$?"

// Normalize returns the shape of sql: its tokens with every literal constant
// (number, string in any syntax, bit string) replaced by Placeholder, comments
// removed (shardwire hints too: they are read by Inspect, and keeping a
// per-key hint in the shape would make every key a new shape), unquoted
// identifiers and keywords lower-cased, and whitespace reduced to single
// spaces where tokens need one. $n parameters, quoted identifiers, operators
// and TRUE/FALSE/NULL are kept. literals lists the replaced constants in
// order. Statements that differ only in literal values, case, spacing or
// comments share a shape; Normalize(shape) returns shape unchanged.
func Normalize(sql string) (shape string, literals []Literal) {
	buf, lits := AppendNormalize(make([]byte, 0, len(sql)), nil, sql)
	return string(buf), lits
}

// AppendNormalize is Normalize writing into caller-owned buffers: it appends
// the shape to dst and the literals to lits and returns both. With buffers of
// sufficient capacity it does not allocate.
func AppendNormalize(dst []byte, lits []Literal, sql string) ([]byte, []Literal) {
	dst, lits, _ = appendNormalize(dst, lits, sql)
	return dst, lits
}

// appendNormalize is AppendNormalize that also reports odd input: a $?
// outside a literal, or an unterminated literal, quoted identifier or
// comment. Such text is not valid SQL, yet its shape can equal a valid
// statement's.
func appendNormalize(dst []byte, lits []Literal, sql string) ([]byte, []Literal, bool) {
	odd := false
	var lx Lexer
	lx.Reset(sql)
	var prev shapeTok
	for {
		t := lx.Next()
		switch t.Kind {
		case TokEOF:
			return dst, lits, odd
		case TokComment:
			odd = odd || t.Flags&FlagUnterminated != 0
			continue
		case TokNumber, TokString, TokBitString:
			odd = odd || t.Flags&FlagUnterminated != 0
			lits = append(lits, literalOf(t))
			cur := shapeTok{kind: TokPlaceholder, first: '$', last: '?'}
			if needSpace(prev, cur) {
				dst = append(dst, ' ')
			}
			dst = append(dst, Placeholder...)
			prev = cur
		default:
			odd = odd || t.Kind == TokPlaceholder || t.Flags&FlagUnterminated != 0
			text := sql[t.Start:t.End]
			cur := shapeTok{kind: t.Kind, first: text[0], last: text[len(text)-1], n: len(text)}
			if needSpace(prev, cur) {
				dst = append(dst, ' ')
			}
			if t.Kind == TokIdent {
				dst = appendLower(dst, text)
			} else {
				dst = append(dst, text...)
			}
			prev = cur
		}
	}
}

// shapeTok is what needSpace knows about an emitted token.
type shapeTok struct {
	kind        TokenKind
	first, last byte
	n           int
}

// needSpace decides whether a space separates prev and cur in a shape. A
// space is left out only where the two tokens cannot run together when the
// shape is scanned again, so the shape scans to the same tokens.
func needSpace(prev, cur shapeTok) bool {
	if prev.kind == TokEOF { // nothing written yet
		return false
	}
	if cur.kind == TokPunct && cur.n == 1 {
		switch cur.first {
		case ')', ']', ',', ';':
			return false
		}
	}
	if prev.kind == TokPunct && prev.n == 1 && (prev.first == '(' || prev.first == '[') {
		return false
	}
	if prev.kind == TokPunct && prev.last == '.' || cur.kind == TokPunct && cur.first == '.' {
		return prev.last == '.' && cur.first == '.' // ". ." must not become ".."
	}
	if prev.kind == TokPunct && prev.last == ':' || cur.kind == TokPunct && cur.first == ':' && cur.last == ':' {
		// ": :" must not become "::", nor ": =" ":=".
		return prev.last == ':' && (cur.first == ':' || cur.first == '=')
	}
	if cur.kind == TokPunct && cur.n == 1 && (cur.first == '(' || cur.first == '[') &&
		(prev.kind == TokIdent || prev.kind == TokQuotedIdent || cur.first == '[' && prev.kind == TokPunct && (prev.first == ')' || prev.first == ']')) {
		return false // f(x), a[1], (a)[1], a[1][2]
	}
	return true
}

// appendLower appends s with ASCII letters lower-cased, as PostgreSQL folds
// unquoted identifiers.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
