package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"syscall"
	"time"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/health"
	"github.com/shardwire/shardwire/metrics"
	"github.com/shardwire/shardwire/proxy"
)

// reloader applies a changed configuration file without dropping clients:
// on SIGHUP, on the admin console's RELOAD, and when the file changes. A
// file that does not validate is refused, its errors logged with FILE:LINE,
// and the running configuration stays.
type reloader struct {
	ctx  context.Context
	path string
	srv  *proxy.Server
	rec  *metrics.Recorder
	log  *slog.Logger

	mu      sync.Mutex
	cfg     *config.Config
	checker *health.Checker
	stamp   fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{fi.ModTime(), fi.Size()}
}

// reload loads, validates and applies the file.
func (r *reloader) reload(why string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stamp = stampOf(r.path)
	cfg, err := config.Load(r.path)
	if err != nil {
		r.refuse(why, err)
		return err
	}
	var next *health.Checker
	if !reflect.DeepEqual(cfg.Shards, r.cfg.Shards) || cfg.Health != r.cfg.Health || cfg.Failover != r.cfg.Failover ||
		cfg.Routing.MaxReplicaLag != r.cfg.Routing.MaxReplicaLag || cfg.Routing.MaxReplicaLagBytes != r.cfg.Routing.MaxReplicaLagBytes {
		// Nodes or checks changed: a new checker (failover state starts over).
		if next, err = health.New(cfg, health.Options{Logger: r.log}); err == nil {
			err = next.Start(r.ctx)
		}
		if err != nil {
			r.refuse(why, err)
			return err
		}
	}
	needRestart, err := r.srv.ApplyConfig(cfg)
	if err != nil {
		if next != nil {
			next.Close()
		}
		r.refuse(why, err)
		return err
	}
	if next != nil {
		r.srv.UseHealth(next)
		r.checker.Close()
		r.checker = next
	}
	r.cfg = cfg
	version := r.srv.ShardMap().Version()
	r.rec.Reload(true, version)
	r.log.Info("configuration reloaded", "trigger", why, "shard_map", version, "new_health_checker", next != nil)
	if len(needRestart) > 0 {
		r.log.Warn("these settings changed but take effect only after a restart", "keys", needRestart)
	}
	return nil
}

func (r *reloader) refuse(why string, err error) {
	r.rec.Reload(false, "")
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			r.log.Error("reload refused, keeping the running configuration", "trigger", why, "error", e.Error())
		}
		return
	}
	r.log.Error("reload refused, keeping the running configuration", "trigger", why, "error", err.Error())
}

// watch reloads on SIGHUP and when the file's size or time changes
// (polled every second: no dependency, works on every file system and
// with Kubernetes' symlink-swapped ConfigMap volumes).
func (r *reloader) watch() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-hup:
			_ = r.reload("SIGHUP")
		case <-tick.C:
			r.mu.Lock()
			changed := stampOf(r.path) != r.stamp
			r.mu.Unlock()
			if changed {
				_ = r.reload("file changed")
			}
		}
	}
}

// close stops the current health checker.
func (r *reloader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checker.Close()
}
