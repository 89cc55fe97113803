// Package configs holds shardwire's example configurations: shardwire.yaml
// (the canonical example), docker/ (the config and scripts of the
// repository's docker-compose.yml) and k8s/ (a Deployment with shardwire as
// a sidecar). It has no code; its tests parse the compose file, the
// Dockerfile and the manifests, check the fields shardwire depends on, and
// check that every embedded config passes what `shardwire check` checks.
package configs
