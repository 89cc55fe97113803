// Package config loads and validates shardwire's YAML configuration.
//
// The user-facing contract is ../shared/spec/shardwire.yaml: every key there is
// accepted with its meaning, and the project adds keys (limits, log, per-user
// server_password, per-table default, …). ${NAME} and ${NAME:-default} are
// replaced from the environment before the YAML is parsed, line by line, so
// error positions stay those of the file. Every error carries FILE:LINE.
//
// A Config is a value: the loader builds a new one per load and nothing mutates
// it afterwards, so it can be shared freely between goroutines.
package config
