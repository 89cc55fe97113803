package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/shardmap"
)

// root is the repository, seen from this package's directory.
const root = ".."

// configDir is where every image and manifest puts the config.
const (
	configDir  = "/etc/shardwire"
	configPath = configDir + "/shardwire.yaml"
)

// dummyEnv stands in for the Secret or the compose environment.
var dummyEnv = map[string]string{"APP_PASSWORD": "dummy-app", "OPS_PASSWORD": "dummy-ops"}

// example is a parsed example config and the environment variables it read.
type example struct {
	cfg  *config.Config
	m    *shardmap.Map
	envs []string
}

// loadExample runs what `shardwire check` runs (config.Parse, shardmap.New)
// on data with the dummy passwords in the environment.
func loadExample(t *testing.T, name string, data []byte) example {
	t.Helper()
	var envs []string
	cfg, err := config.Parse(name, data, func(k string) (string, bool) {
		envs = append(envs, k)
		v, ok := dummyEnv[k]
		return v, ok
	})
	if err != nil {
		t.Fatalf("%s does not pass config.Parse:\n%v", name, err)
	}
	m, err := shardmap.New(cfg)
	if err != nil {
		t.Fatalf("%s does not pass shardmap.New:\n%v", name, err)
	}
	// Passwords come from the environment, never from the file.
	for _, u := range cfg.Users {
		fromEnv := false
		for _, v := range dummyEnv {
			fromEnv = fromEnv || u.Password == v
		}
		if !fromEnv {
			t.Errorf("%s: user %s has a literal password; use ${...} from the environment", name, u.Name)
		}
	}
	return example{cfg: cfg, m: m, envs: envs}
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// splitPort returns host and port of a host:port.
func splitPort(t *testing.T, what, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s %q: port: %v", what, addr, err)
	}
	return h, n
}

func anyInterface(host string) bool { return host == "" || host == "0.0.0.0" || host == "::" }

// TestExampleConfigs: the three embedded configs pass `shardwire check`, and
// the docker and k8s ones place every key exactly as the canonical example.
func TestExampleConfigs(t *testing.T) {
	t.Parallel()
	canon := loadExample(t, "configs/shardwire.yaml", readFile(t, "configs/shardwire.yaml"))
	docker := loadExample(t, "configs/docker/shardwire.yaml", readFile(t, "configs/docker/shardwire.yaml"))
	cm := k8sConfigMap(t)
	kube := loadExample(t, "configs/k8s/configmap.yaml", []byte(cm.Data["shardwire.yaml"]))
	for _, ex := range []struct {
		name string
		e    example
	}{{"docker", docker}, {"k8s", kube}} {
		if got, want := ex.e.m.Version(), canon.m.Version(); got != want {
			t.Errorf("%s example's shard map version %s differs from configs/shardwire.yaml's %s: keys would be placed differently", ex.name, got, want)
		}
		for _, v := range []string{"APP_PASSWORD", "OPS_PASSWORD"} {
			if !slices.Contains(ex.e.envs, v) {
				t.Errorf("%s example does not read ${%s}", ex.name, v)
			}
		}
	}
}

// composeFile is the part of docker-compose.yml we check. Decoding with
// known fields only, so a misspelt key fails the test.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
	Restart         string `yaml:"restart"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

// mounts returns the service's bind mounts of local files: target -> source.
func (s composeService) mounts() map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && strings.HasPrefix(parts[0], "./") {
			out[parts[1]] = parts[0]
		}
	}
	return out
}

// envRef is a compose ${NAME} or ${NAME:-default} reference.
var composeRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}$`)

func TestDockerCompose(t *testing.T) {
	t.Parallel()
	var cf composeFile
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, "docker-compose.yml")))
	dec.KnownFields(true)
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	ex := loadExample(t, "configs/docker/shardwire.yaml", readFile(t, "configs/docker/shardwire.yaml"))
	cfg := ex.cfg

	sw, ok := cf.Services["shardwire"]
	if !ok {
		t.Fatal("docker-compose.yml has no service shardwire")
	}
	if sw.Build == nil || sw.Build.Context != "." || sw.Build.Dockerfile != "Dockerfile" {
		t.Errorf("shardwire is not built from ./Dockerfile: %+v", sw.Build)
	}
	if src := sw.mounts()[configPath]; src != "./configs/docker/shardwire.yaml" {
		t.Errorf("shardwire mounts %q at %s, want ./configs/docker/shardwire.yaml", src, configPath)
	}
	if !slices.Equal(sw.Command, []string{"-c", configPath}) {
		t.Errorf("shardwire command %q, want [-c %s]", sw.Command, configPath)
	}
	// Published ports reach the container from outside its loopback.
	for _, a := range []struct{ key, addr string }{{"listen", cfg.Listen}, {"admin_listen", cfg.AdminListen}} {
		host, port := splitPort(t, a.key, a.addr)
		if !anyInterface(host) {
			t.Errorf("%s %s: in a container it must listen on 0.0.0.0", a.key, a.addr)
		}
		if want := fmt.Sprintf("%d:%d", port, port); !slices.Contains(sw.Ports, want) {
			t.Errorf("shardwire ports %q lack %q for %s", sw.Ports, want, a.key)
		}
	}
	for _, p := range []string{"6432:6432", "9930:9930"} {
		if !slices.Contains(sw.Ports, p) {
			t.Errorf("shardwire ports %q lack the documented %s", sw.Ports, p)
		}
	}
	for _, v := range ex.envs {
		if _, ok := sw.Environment[v]; !ok {
			t.Errorf("the config reads ${%s} but the shardwire service does not set it", v)
		}
	}
	grace, err := time.ParseDuration(sw.StopGracePeriod)
	if err != nil || grace <= cfg.Limits.ShutdownTimeout {
		t.Errorf("shardwire stop_grace_period %q must exceed limits.shutdown_timeout %v (%v)", sw.StopGracePeriod, cfg.Limits.ShutdownTimeout, err)
	}

	// Every node of the config is a postgres:15 service: primaries with the
	// init script, replicas cloned from their shard's primary.
	nodes := 0
	for _, sh := range cfg.Shards {
		psvc, pport := splitPort(t, "primary of "+sh.Name, sh.Primary)
		p, ok := cf.Services[psvc]
		if !ok || pport != 5432 {
			t.Errorf("shard %s: primary %s is not a compose service on port 5432", sh.Name, sh.Primary)
			continue
		}
		nodes++
		if p.Image != "postgres:15" {
			t.Errorf("%s: image %q, want postgres:15", psvc, p.Image)
		}
		if src := p.mounts()["/docker-entrypoint-initdb.d/10-shardwire.sh"]; src != "./configs/docker/init-primary.sh" {
			t.Errorf("%s: init script mount is %q", psvc, src)
		}
		// The users' passwords on Postgres are shardwire's (server_password
		// defaults to password).
		for _, v := range []string{"APP_PASSWORD", "OPS_PASSWORD"} {
			if p.Environment[v] == "" || p.Environment[v] != sw.Environment[v] {
				t.Errorf("%s: %s = %q, shardwire has %q: the passwords would differ", psvc, v, p.Environment[v], sw.Environment[v])
			}
		}
		if len(sh.Replicas) == 0 {
			t.Errorf("shard %s has no replica", sh.Name)
		}
		for _, r := range sh.Replicas {
			rsvc, rport := splitPort(t, "replica of "+sh.Name, r)
			rs, ok := cf.Services[rsvc]
			if !ok || rport != 5432 {
				t.Errorf("shard %s: replica %s is not a compose service on port 5432", sh.Name, r)
				continue
			}
			nodes++
			if rs.Image != "postgres:15" {
				t.Errorf("%s: image %q, want postgres:15", rsvc, rs.Image)
			}
			if rs.Environment["PRIMARY_HOST"] != psvc {
				t.Errorf("%s: PRIMARY_HOST %q, want %s", rsvc, rs.Environment["PRIMARY_HOST"], psvc)
			}
			if rs.Environment["REPLICATION_PASSWORD"] != p.Environment["REPLICATION_PASSWORD"] {
				t.Errorf("%s: REPLICATION_PASSWORD differs from %s's", rsvc, psvc)
			}
			const script = "/usr/local/bin/replica-entrypoint.sh"
			if src := rs.mounts()[script]; src != "./configs/docker/replica-entrypoint.sh" || !slices.Contains(rs.Entrypoint, script) {
				t.Errorf("%s: entrypoint %q does not run the mounted replica script (mount %q)", rsvc, rs.Entrypoint, src)
			}
			if rs.DependsOn[psvc].Condition != "service_healthy" {
				t.Errorf("%s: does not wait for %s to be healthy", rsvc, psvc)
			}
		}
	}
	for name, s := range cf.Services {
		if s.Image == "postgres:15" {
			if sw.DependsOn[name].Condition != "service_healthy" {
				t.Errorf("shardwire does not wait for %s to be healthy", name)
			}
			if s.Healthcheck == nil || !slices.Contains(s.Healthcheck.Test, "pg_isready") {
				t.Errorf("%s has no pg_isready healthcheck", name)
			}
		}
		for target, src := range s.mounts() {
			st, err := os.Stat(filepath.Join(root, src))
			if err != nil {
				t.Errorf("%s mounts %s at %s: %v", name, src, target, err)
			} else if strings.HasSuffix(src, ".sh") && st.Mode()&0o111 == 0 {
				t.Errorf("%s: %s is not executable", name, src)
			}
		}
		for k, v := range s.Environment {
			if strings.Contains(v, "$") && !composeRef.MatchString(v) {
				t.Errorf("%s: %s = %q is not a ${NAME} or ${NAME:-default} reference", name, k, v)
			}
		}
	}
	if nodes != 4 {
		t.Errorf("want 4 Postgres nodes (2 shards x primary + replica), got %d", nodes)
	}
}

// k8sObject is the header every manifest has.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Type       string            `yaml:"type"`
	Spec       yaml.Node         `yaml:"spec"`
	Resources  []string          `yaml:"resources"`
	file       string
}

type deploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Spec podSpec `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int         `yaml:"terminationGracePeriodSeconds"`
	InitContainers                []container  `yaml:"initContainers"`
	Containers                    []container  `yaml:"containers"`
	Volumes                       []volumeSpec `yaml:"volumes"`
}

type volumeSpec struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
}

type container struct {
	Name          string   `yaml:"name"`
	Image         string   `yaml:"image"`
	RestartPolicy string   `yaml:"restartPolicy"`
	Args          []string `yaml:"args"`
	Env           []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
	} `yaml:"securityContext"`
}

type probe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

// port resolves a probe's port, by number or by the container's port names.
func (c container) port(n yaml.Node) (int, error) {
	if p, err := strconv.Atoi(n.Value); err == nil {
		return p, nil
	}
	for _, p := range c.Ports {
		if p.Name == n.Value {
			return p.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("no port named %q", n.Value)
}

func (c container) preStopSeconds() int {
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		return c.Lifecycle.PreStop.Sleep.Seconds
	}
	return 0
}

// k8sManifests decodes every document of every YAML file in configs/k8s.
func k8sManifests(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "configs/k8s/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in configs/k8s (%v)", err)
	}
	var out []k8sObject
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o k8sObject
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" || o.APIVersion == "" {
				t.Errorf("%s: a document without kind or apiVersion", f)
			}
			o.file = filepath.Base(f)
			out = append(out, o)
		}
	}
	return out
}

func findKind(t *testing.T, objs []k8sObject, kind string) k8sObject {
	t.Helper()
	var found []k8sObject
	for _, o := range objs {
		if o.Kind == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s in configs/k8s, got %d", kind, len(found))
	}
	return found[0]
}

func k8sConfigMap(t *testing.T) k8sObject {
	t.Helper()
	cm := findKind(t, k8sManifests(t), "ConfigMap")
	if cm.Data["shardwire.yaml"] == "" {
		t.Fatalf("ConfigMap %s has no shardwire.yaml", cm.Metadata.Name)
	}
	return cm
}

func TestKubernetesSidecar(t *testing.T) {
	t.Parallel()
	objs := k8sManifests(t)
	cm := findKind(t, objs, "ConfigMap")
	secret := findKind(t, objs, "Secret")
	dep := findKind(t, objs, "Deployment")
	kust := findKind(t, objs, "Kustomization")
	for _, o := range objs {
		if o.Kind != "Kustomization" && !slices.Contains(kust.Resources, o.file) {
			t.Errorf("kustomization.yaml does not list %s", o.file)
		}
	}
	ex := loadExample(t, "configs/k8s/configmap.yaml", []byte(cm.Data["shardwire.yaml"]))
	cfg := ex.cfg

	var spec deploymentSpec
	if err := dep.Spec.Decode(&spec); err != nil {
		t.Fatalf("Deployment spec: %v", err)
	}
	for k, v := range spec.Selector.MatchLabels {
		if spec.Template.Metadata.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	pod := spec.Template.Spec
	var sw, app *container
	for i := range pod.InitContainers {
		if c := &pod.InitContainers[i]; c.Name == "shardwire" {
			sw = c
			// Without restartPolicy Always an init container that never
			// exits would keep the pod from starting.
			if c.RestartPolicy != "Always" {
				t.Errorf("shardwire is an init container without restartPolicy: Always")
			}
		}
	}
	for i := range pod.Containers {
		switch c := &pod.Containers[i]; c.Name {
		case "shardwire":
			sw = c
		case "app":
			app = c
		}
	}
	if sw == nil || app == nil {
		t.Fatalf("the pod needs containers shardwire and app")
	}
	if !strings.Contains(sw.Image, "shardwire") {
		t.Errorf("shardwire image %q", sw.Image)
	}
	if !slices.Equal(sw.Args, []string{"-c", configPath}) {
		t.Errorf("shardwire args %q, want [-c %s]", sw.Args, configPath)
	}

	// Config: the ConfigMap, mounted as a directory so edits reach the pod.
	mounted := false
	for _, m := range sw.VolumeMounts {
		if m.MountPath != configDir {
			continue
		}
		if m.SubPath != "" {
			t.Errorf("config mounted with subPath: ConfigMap edits would never reach the pod")
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("ConfigMap %s is not mounted at %s", cm.Metadata.Name, configDir)
	}

	// Probes on admin_listen's port, reachable from the kubelet.
	adminHost, adminPort := splitPort(t, "admin_listen", cfg.AdminListen)
	if !anyInterface(adminHost) {
		t.Errorf("admin_listen %s: the kubelet probes the pod IP, so it must listen on 0.0.0.0", cfg.AdminListen)
	}
	_, listenPort := splitPort(t, "listen", cfg.Listen)
	for _, p := range []struct {
		name  string
		probe *probe
		path  string
	}{{"startupProbe", sw.StartupProbe, "/healthz"}, {"livenessProbe", sw.LivenessProbe, "/healthz"}, {"readinessProbe", sw.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("shardwire has no HTTP %s", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s path %q, want %s", p.name, p.probe.HTTPGet.Path, p.path)
		}
		if port, err := sw.port(p.probe.HTTPGet.Port); err != nil || port != adminPort {
			t.Errorf("%s port %d (%v), want admin_listen's %d", p.name, port, err, adminPort)
		}
	}
	var ports []int
	for _, p := range sw.Ports {
		ports = append(ports, p.ContainerPort)
	}
	if !slices.Contains(ports, adminPort) || !slices.Contains(ports, listenPort) || adminPort != 9930 || listenPort != 6432 {
		t.Errorf("shardwire containerPorts %v; want listen %d and admin_listen %d (6432, 9930)", ports, listenPort, adminPort)
	}

	// Passwords: from the Secret, for every ${VAR} the config reads.
	secretKeys := map[string]bool{}
	for k := range secret.StringData {
		secretKeys[k] = true
	}
	for k := range secret.Data {
		secretKeys[k] = true
	}
	fromSecret := func(c *container, name string) (key string, ok bool) {
		for _, e := range c.Env {
			if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
				e.ValueFrom.SecretKeyRef.Name == secret.Metadata.Name && secretKeys[e.ValueFrom.SecretKeyRef.Key] {
				return e.ValueFrom.SecretKeyRef.Key, true
			}
		}
		return "", false
	}
	for _, v := range ex.envs {
		if _, ok := fromSecret(sw, v); !ok {
			t.Errorf("the config reads ${%s}, which shardwire's env does not take from Secret %s", v, secret.Metadata.Name)
		}
	}

	// The app reaches shardwire on localhost with the app user's password.
	var dbURL string
	appPasswordAt, dbURLAt := -1, -1
	for i, e := range app.Env {
		switch e.Name {
		case "DATABASE_URL":
			dbURL, dbURLAt = e.Value, i
		case "APP_PASSWORD":
			appPasswordAt = i
		}
	}
	swKey, _ := fromSecret(sw, "APP_PASSWORD")
	appKey, ok := fromSecret(app, "APP_PASSWORD")
	if !ok || appKey != swKey {
		t.Errorf("the app's APP_PASSWORD is not Secret key %q, which shardwire uses", swKey)
	}
	if !strings.Contains(dbURL, "$(APP_PASSWORD)") || appPasswordAt < 0 || appPasswordAt > dbURLAt {
		t.Errorf("DATABASE_URL %q must use $(APP_PASSWORD), defined before it", dbURL)
	}
	u, err := url.Parse(strings.ReplaceAll(dbURL, "$(APP_PASSWORD)", dummyEnv["APP_PASSWORD"]))
	if err != nil {
		t.Fatalf("DATABASE_URL: %v", err)
	}
	pw, _ := u.User.Password()
	if user, ok := cfg.User(u.User.Username()); !ok || user.Password != pw {
		t.Errorf("DATABASE_URL user %q with $(APP_PASSWORD) is not a user of the config with that password", u.User.Username())
	}
	if u.Hostname() != "localhost" && u.Hostname() != "127.0.0.1" || u.Port() != strconv.Itoa(listenPort) || u.Path != "/"+cfg.Database {
		t.Errorf("DATABASE_URL %s does not point at localhost:%d/%s", dbURL, listenPort, cfg.Database)
	}

	// Shutdown: the grace period covers every preStop sleep and the drain.
	if pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	preStops := time.Duration(sw.preStopSeconds()+app.preStopSeconds()) * time.Second
	if app.preStopSeconds() == 0 {
		t.Errorf("the app has no preStop sleep: it would get SIGTERM before the endpoints drop the pod")
	}
	if grace <= preStops+cfg.Limits.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v must exceed the preStop sleeps %v + limits.shutdown_timeout %v",
			grace, preStops, cfg.Limits.ShutdownTimeout)
	}

	for _, r := range []string{"cpu", "memory"} {
		if sw.Resources.Requests[r] == "" {
			t.Errorf("shardwire has no %s request", r)
		}
	}
	if sw.Resources.Limits["memory"] == "" {
		t.Errorf("shardwire has no memory limit")
	}
	if sw.SecurityContext == nil || sw.SecurityContext.RunAsNonRoot == nil || !*sw.SecurityContext.RunAsNonRoot {
		t.Errorf("shardwire does not require a non-root user")
	}
	if spec.Template.Metadata.Annotations["prometheus.io/port"] != strconv.Itoa(adminPort) {
		t.Errorf("prometheus.io/port annotation %q, want %d", spec.Template.Metadata.Annotations["prometheus.io/port"], adminPort)
	}
}

// TestDockerfile checks the Dockerfile's recipe line by line: a cgo build
// linked statically, a non-root distroless image with the documented ports,
// config path and entrypoint.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	text := string(readFile(t, "Dockerfile"))
	// Join continuation lines, drop comments.
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(text, "\\\n", " "), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	var froms []string
	for _, l := range lines {
		if strings.HasPrefix(l, "FROM ") {
			froms = append(froms, l)
		}
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "FROM golang:1.26") || !strings.Contains(froms[1], "distroless/static") {
		t.Errorf("want a golang:1.26 build stage and a distroless/static final stage, got %q", froms)
	}
	final := lines[slices.Index(lines, froms[len(froms)-1]):]
	want := []struct {
		in []string
		re string
	}{
		{lines, `CGO_ENABLED=1 go build .*-tags netgo,osusergo .*-linkmode external -extldflags -static.* \./cmd/shardwire`},
		{lines, `ldd /out/shardwire`},
		{final, `^USER nonroot`},
		{final, `^EXPOSE 6432 9930$`},
		{final, `^ENTRYPOINT \["/usr/local/bin/shardwire", "run"\]$`},
		{final, `^CMD \["-c", "` + configPath + `"\]$`},
		{final, `^ENV SHARDWIRE_CONFIG=` + configPath + `$`},
	}
	for _, w := range want {
		re := regexp.MustCompile(w.re)
		if !slices.ContainsFunc(w.in, re.MatchString) {
			t.Errorf("Dockerfile has no line matching %s", w.re)
		}
	}
}
