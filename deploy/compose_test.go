package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/matryer/is"
	"gopkg.in/yaml.v3"

	"github.com/thumbnailed/thumbnailed/config"
	"github.com/thumbnailed/thumbnailed/internal/testnet"
	"github.com/thumbnailed/thumbnailed/internal/tests3"
)

// The repository root, seen from this package.
const root = ".."

type composeFile struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image         string            `yaml:"image"`
	Build         any               `yaml:"build"`
	Command       []string          `yaml:"command"`
	Environment   map[string]string `yaml:"environment"`
	Ports         []string          `yaml:"ports"`
	Volumes       []string          `yaml:"volumes"`
	ContainerName string            `yaml:"container_name"`
	DependsOn     map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// builtHere reports whether the service runs the image built from this
// repository, so runs our binary with a role.
func (s service) builtHere() bool { return s.Build != nil }

func (s service) role() string {
	if len(s.Command) == 0 {
		return config.RoleAll // the image's CMD
	}
	return s.Command[0]
}

// loadCompose parses compose.yaml, with every ${VAR:-default} resolved to its
// default, as on a machine that sets none of them.
func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for name, s := range f.Services {
		for k, v := range s.Environment {
			resolved, err := interpolate(v)
			if err != nil {
				t.Fatalf("compose.yaml: service %s, %s: %v", name, k, err)
			}
			s.Environment[k] = resolved
		}
	}
	if len(f.Services) == 0 {
		t.Fatal("compose.yaml has no services")
	}
	return f
}

var variable = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate resolves compose's ${VAR:-default} and ${VAR-default} to the
// default and $$ to $; a variable without a default is an error, since the
// file must run as it is.
func interpolate(s string) (string, error) {
	var err error
	out := variable.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := variable.FindStringSubmatch(m)
		name, op, def := sub[1], sub[2], sub[3]
		if sub[4] != "" {
			name = sub[4]
		}
		if op != ":-" && op != "-" {
			err = fmt.Errorf("${%s} has no default, so the file does not run as it is", name)
			return ""
		}
		return def
	})
	return out, err
}

func TestInterpolate(t *testing.T) {
	is := is.New(t)
	for in, want := range map[string]string{
		"${A:-x}":                "x",
		"${A-x}":                 "x",
		"a${B:-b c}d":            "ab cd",
		"$$HOME":                 "$HOME",
		"smtp://m:1025?tls=none": "smtp://m:1025?tls=none",
	} {
		got, err := interpolate(in)
		is.NoErr(err)
		is.Equal(got, want)
	}
	_, err := interpolate("${NO_DEFAULT}")
	is.True(err != nil)
	_, err = interpolate("${REQUIRED:?set it}")
	is.True(err != nil)
}

// configNames are the THUMBNAILED_* variables the config package reads.
func configNames() map[string]bool {
	names := map[string]bool{}
	for _, n := range config.Names {
		names[n] = true
	}
	return names
}

func getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func TestComposeServicesRunValidConfiguration(t *testing.T) {
	f := loadCompose(t)
	names := configNames()
	roles := map[string]bool{}
	for name, s := range f.Services {
		if !s.builtHere() {
			for k := range s.Environment {
				if strings.HasPrefix(k, "THUMBNAILED_") {
					t.Errorf("service %s sets %s but does not run thumbnailed", name, k)
				}
			}
			continue
		}
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			role := s.role()
			is.True(slices.Contains(config.Roles, role)) // the command is a role of the binary
			is.Equal(len(s.Command) <= 1, true)          // and nothing else: run takes one argument
			roles[role] = true
			for k := range s.Environment {
				if strings.HasPrefix(k, "THUMBNAILED_") && !names[k] {
					t.Errorf("%s is not a setting of the config package (misspelt?)", k)
				}
			}
			cfg, err := config.Load(role, getenv(s.Environment))
			if err != nil {
				t.Fatalf("the %s service would refuse to start:\n%v", name, err)
			}
			is.True(cfg.RedisURL != "")          // every role shares one durable Redis
			is.Equal(s.Image, "thumbnailed:dev") // one image, built once, for every role
			is.Equal(s.DependsOn["redis"].Condition, "service_healthy")
		})
	}
	for _, role := range []string{config.RoleAPI, config.RoleWorker, config.RoleWebUI} {
		if !roles[role] {
			t.Errorf("no service runs the %s role", role)
		}
	}
}

func TestComposeRedisIsDurable(t *testing.T) {
	is := is.New(t)
	f := loadCompose(t)
	redis, ok := f.Services["redis"]
	is.True(ok)
	cmd := strings.Join(redis.Command, " ")
	is.True(strings.Contains(cmd, "--appendonly yes"))              // jobs survive a restart
	is.True(strings.Contains(cmd, "--appendfsync always"))          // every write, so a 202 survives a crash of Redis
	is.True(strings.Contains(cmd, "--maxmemory-policy noeviction")) // an evicted key is a lost job
	is.True(slices.Contains(redis.Volumes, "redis-data:/data"))     // on a named volume
	_, declared := f.Volumes["redis-data"]
	is.True(declared)
	is.True(redis.Healthcheck != nil && strings.Contains(strings.Join(redis.Healthcheck.Test, " "), "redis-cli ping"))
}

// With S3, a finished job keeps only its record in Redis: compose runs one,
// the version CI tests against, with the bucket the roles are given.
func TestComposeImagesLiveInS3(t *testing.T) {
	is := is.New(t)
	f := loadCompose(t)
	s3, ok := f.Services["s3"]
	is.True(ok)
	is.Equal(s3.Image, "versity/versitygw:"+tests3.Version)
	is.True(slices.Contains(s3.Volumes, "s3-data:/data")) // images survive a restart
	is.Equal(s3.DependsOn["s3-bucket"].Condition, "service_completed_successfully")
	is.Equal(strings.Join(f.Services["s3-bucket"].Command, " "), "mkdir -p /data/thumbnailed")
	for _, name := range []string{"api", "worker"} {
		svc := f.Services[name]
		cfg, err := config.Load(svc.role(), getenv(svc.Environment))
		is.NoErr(err)
		is.Equal(cfg.Storage.Bucket, "thumbnailed")
		is.True(strings.Contains(svc.Environment["THUMBNAILED_STORAGE_URL"], "endpoint=http://s3:7070"))
		is.Equal(svc.Environment["AWS_ACCESS_KEY_ID"], s3.Environment["ROOT_ACCESS_KEY"]) // the roles log in with the server's key
		is.Equal(svc.Environment["AWS_SECRET_ACCESS_KEY"], s3.Environment["ROOT_SECRET_KEY"])
		is.Equal(svc.DependsOn["s3"].Condition, "service_started")
	}
	is.Equal(f.Services["api"].Environment["THUMBNAILED_LINK_SECRET"], f.Services["worker"].Environment["THUMBNAILED_LINK_SECRET"]) // one key signs every link
}

func TestComposeWorkersScale(t *testing.T) {
	is := is.New(t)
	worker := loadCompose(t).Services["worker"]
	is.Equal(worker.role(), config.RoleWorker)
	is.Equal(len(worker.Ports), 0)                            // no host port, so --scale worker=N never collides
	is.Equal(worker.ContainerName, "")                        // nor a fixed name
	is.True(worker.Environment["THUMBNAILED_SMTP_URL"] != "") // mail goes to Mailpit, not to a container's outbox
}

func TestComposePrivatePortsStayOnLoopback(t *testing.T) {
	f := loadCompose(t)
	for _, name := range []string{"webui", "mailpit"} {
		for _, p := range f.Services[name].Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q on every interface of the host; bind it to 127.0.0.1", name, p)
			}
		}
	}
	webui := f.Services["webui"]
	if webui.Environment["THUMBNAILED_WEBUI_PASSWORD"] == "" {
		t.Error("the web UI listens on 0.0.0.0 in its container: it needs a password")
	}
	if webui.Healthcheck == nil || !slices.Contains(webui.Healthcheck.Test, "webui") {
		t.Error("the webui role listens on THUMBNAILED_WEBUI_ADDR only: its health check must say `thumbnailed healthcheck webui`")
	}
}

// TestDockerfile checks what a docker build here cannot: that the
// Dockerfile builds packages that exist and wires the binaries it builds.
func TestDockerfile(t *testing.T) {
	is := is.New(t)
	raw, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	is.NoErr(err)
	df := string(raw)
	for _, want := range []string{
		"FROM golang:${GO_VERSION}-bookworm AS build",
		"FROM debian:bookworm-slim",
		"-o /out/thumbnailed ./cmd/thumbnailed",
		"-X main.version=${VERSION} -X main.commit=${COMMIT}",
		"-tags vips",
		"libvips42",
		"USER 10001:10001",
		"EXPOSE 8080 5040",
		`CMD ["/usr/local/bin/thumbnailed", "healthcheck"]`,
		`ENTRYPOINT ["/usr/local/bin/thumbnailed"]`,
		`CMD ["all"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	for _, pkg := range []string{"cmd/thumbnailed"} {
		_, err := os.Stat(filepath.Join(root, pkg))
		is.NoErr(err) // the Dockerfile builds a package that exists
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	is.NoErr(err)
	for _, line := range strings.Split(string(ignore), "\n") {
		line = strings.TrimSpace(line)
		for _, needed := range []string{"go.mod", "go.sum", "cmd", "config", "templates", "server"} {
			if line == needed || line == needed+"/" {
				t.Errorf(".dockerignore leaves %s out of the build context", needed)
			}
		}
	}
}

// TestComposeRolesRunTheRealBinary builds the binary and runs the api, worker
// and webui roles with the environment compose.yaml gives them (with Redis
// and the listen addresses pointed at this machine), waits until each answers
// /healthz, stops it with SIGTERM as docker stop does, and wants a clean exit
// within 10s.
func TestComposeRolesRunTheRealBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	f := loadCompose(t)
	redisURL := os.Getenv("THUMBNAILED_TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = "redis://" + miniredis.RunT(t).Addr() + "/0"
	}
	bucket := tests3.New(t) // compose's S3 service, played by a real versitygw here

	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build the binary with: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "thumbnailed")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/thumbnailed")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/thumbnailed: %v\n%s", err, out)
	}

	for _, name := range []string{"api", "worker", "webui"} {
		t.Run(name, func(t *testing.T) {
			s, ok := f.Services[name]
			if !ok {
				t.Fatalf("compose.yaml has no %s service", name)
			}
			env := map[string]string{}
			for k, v := range s.Environment {
				env[k] = v
			}
			env["THUMBNAILED_REDIS_URL"] = redisURL
			if env["THUMBNAILED_STORAGE_URL"] != "" {
				env["THUMBNAILED_STORAGE_URL"] = bucket.URLWithPrefix("images")
				env["AWS_ACCESS_KEY_ID"] = bucket.Getenv("AWS_ACCESS_KEY_ID")
				env["AWS_SECRET_ACCESS_KEY"] = bucket.Getenv("AWS_SECRET_ACCESS_KEY")
			}
			env["THUMBNAILED_ADDR"] = testnet.FreeAddr(t)
			health := "http://" + env["THUMBNAILED_ADDR"]
			if s.role() == config.RoleWebUI {
				env["THUMBNAILED_WEBUI_ADDR"] = testnet.FreeAddr(t)
				health = "http://" + env["THUMBNAILED_WEBUI_ADDR"]
			}
			if _, err := config.Load(s.role(), getenv(env)); err != nil {
				t.Fatalf("the %s service's configuration: %v", name, err)
			}
			runUntilHealthyThenStop(t, bin, s.role(), env, health)
		})
	}
}

func runUntilHealthyThenStop(t *testing.T, bin, role string, env map[string]string, base string) {
	t.Helper()
	dir := t.TempDir() // the image's WORKDIR: ./outbox lives here
	cmd := exec.Command(bin, role)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("output of thumbnailed %s:\n%s", role, out.String())
		}
	}()

	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		status, err := get(ctx, client, base+"/healthz")
		if err == nil && status == http.StatusOK {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("thumbnailed %s exited before it was healthy: %v", role, err)
		case <-ctx.Done():
			t.Fatalf("thumbnailed %s was not healthy within 30s (last: %d, %v)", role, status, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if role != config.RoleWebUI {
		status, err := get(ctx, client, base+"/readyz")
		if err != nil || status != http.StatusOK {
			t.Errorf("thumbnailed %s: /readyz = %d, %v; want 200 (Redis reachable)", role, status, err)
		}
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("thumbnailed %s did not exit cleanly on SIGTERM: %v", role, err)
		}
		t.Logf("thumbnailed %s stopped %v after SIGTERM", role, time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatalf("thumbnailed %s still runs 10s after SIGTERM", role)
	}
	if pw := env["THUMBNAILED_WEBUI_PASSWORD"]; pw != "" && strings.Contains(out.String(), pw) {
		t.Errorf("thumbnailed %s logged the web UI password", role)
	}
	if key := env["THUMBNAILED_API_KEYS"]; key != "" && strings.Contains(out.String(), key) {
		t.Errorf("thumbnailed %s logged an API key", role)
	}
}

func get(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
