package proxy

import (
	"encoding/binary"
)

// SQLSTATE codes shardwire itself sends.
const (
	codeProtocolViolation    = "08P01"
	codeConnectionFailure    = "08006"
	codeConnectionException  = "08000"
	codeInvalidPassword      = "28P01"
	codeInvalidAuthSpec      = "28000"
	codeInvalidCatalog       = "3D000"
	codeTooManyConnections   = "53300"
	codeProgramLimitExceeded = "54000"
	codeFeatureNotSupported  = "0A000"
	codeAdminShutdown        = "57P01"
	codeUndefinedPStatement  = "26000"
	codeDuplicatePStatement  = "42P05"
	codeInternalError        = "XX000"
	codeQueryCanceled        = "57014"
)

// appendError appends an ErrorResponse (severity ERROR or FATAL).
func appendError(dst []byte, severity, code, msg string) []byte {
	dst, start := beginFrame(dst, 'E')
	dst = append(dst, 'S')
	dst = append(dst, severity...)
	dst = append(dst, 0, 'V')
	dst = append(dst, severity...)
	dst = append(dst, 0, 'C')
	dst = append(dst, code...)
	dst = append(dst, 0, 'M')
	dst = append(dst, msg...)
	dst = append(dst, 0, 0)
	return finishFrame(dst, start)
}

func appendReady(dst []byte, status byte) []byte {
	return append(dst, 'Z', 0, 0, 0, 5, status)
}

func appendParameterStatus(dst []byte, name, value string) []byte {
	dst, start := beginFrame(dst, 'S')
	dst = append(dst, name...)
	dst = append(dst, 0)
	dst = append(dst, value...)
	dst = append(dst, 0)
	return finishFrame(dst, start)
}

func appendAuth(dst []byte, code uint32, extra []byte) []byte {
	dst, start := beginFrame(dst, 'R')
	dst = binary.BigEndian.AppendUint32(dst, code)
	dst = append(dst, extra...)
	return finishFrame(dst, start)
}

func appendBackendKeyData(dst []byte, pid uint32, secret []byte) []byte {
	dst, start := beginFrame(dst, 'K')
	dst = binary.BigEndian.AppendUint32(dst, pid)
	dst = append(dst, secret...)
	return finishFrame(dst, start)
}

// appendQuery appends a simple Query message.
func appendQuery(dst []byte, sql string) []byte {
	dst, start := beginFrame(dst, 'Q')
	dst = append(dst, sql...)
	dst = append(dst, 0)
	return finishFrame(dst, start)
}

var (
	msgParseComplete = []byte{'1', 0, 0, 0, 4}
	msgCloseComplete = []byte{'3', 0, 0, 0, 4}
	msgBindComplete  = []byte{'2', 0, 0, 0, 4}
)

// errorFields extracts the SQLSTATE and message of an ErrorResponse body.
func errorFields(body []byte) (code, msg string) {
	for len(body) > 1 {
		f := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			break
		}
		switch f {
		case 'C':
			code = string(v)
		case 'M':
			msg = string(v)
		}
		body = rest
	}
	return code, msg
}

// downgradeFatal rewrites an ErrorResponse of severity FATAL or PANIC to
// ERROR, keeping every other field; other errors come back unchanged.
func downgradeFatal(body []byte) []byte {
	fatal := false
	for rest := body; len(rest) > 1; {
		f := rest[0]
		v, r, ok := cstring(rest[1:])
		if !ok {
			return body
		}
		if (f == 'S' || f == 'V') && (string(v) == "FATAL" || string(v) == "PANIC") {
			fatal = true
		}
		rest = r
	}
	if !fatal {
		return body
	}
	out := make([]byte, 0, len(body))
	for rest := body; len(rest) > 1; {
		f := rest[0]
		v, r, _ := cstring(rest[1:])
		out = append(out, f)
		if f == 'S' || f == 'V' {
			out = append(out, "ERROR"...)
		} else {
			out = append(out, v...)
		}
		out = append(out, 0)
		rest = r
	}
	return append(out, 0)
}
