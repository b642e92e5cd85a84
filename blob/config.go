package blob

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// EnvURL names the variable that chooses the store.
const EnvURL = "THUMBNAILED_STORAGE_URL"

// The backends.
const (
	BackendRedis = "redis"
	BackendS3    = "s3"
)

// The variables an s3:// store reads its credentials from.
const (
	EnvAccessKey    = "AWS_ACCESS_KEY_ID"
	EnvSecretKey    = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken = "AWS_SESSION_TOKEN"
)

// defaultEndpoint serves an s3:// URL without endpoint=: Amazon S3 itself.
const defaultEndpoint = "s3.amazonaws.com"

// Config is a checked THUMBNAILED_STORAGE_URL. It holds no secret.
type Config struct {
	Backend string // BackendRedis or BackendS3
	// The rest is for BackendS3 only.
	Bucket    string
	Prefix    string // object keys start with Prefix + "/"; no leading or trailing slash; "" = the bucket's root
	Endpoint  string // host or host:port
	Secure    bool   // https
	Region    string // "" = ask the server
	PathStyle bool   // http://host/bucket/key rather than http://bucket.host/key
}

// String describes the store without secrets: "redis" or "s3 bucket/prefix at host".
func (c Config) String() string {
	if c.Backend != BackendS3 {
		return BackendRedis
	}
	where := c.Bucket
	if c.Prefix != "" {
		where += "/" + c.Prefix
	}
	return "s3 " + where + " at " + c.Endpoint
}

var regionPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ParseURL checks THUMBNAILED_STORAGE_URL without connecting: "" or "redis:"
// for the job Redis, or
//
//	s3://BUCKET[/PREFIX][?endpoint=http(s)://host[:port]][&region=REGION][&path_style=true]
//
// Without endpoint= the store is Amazon S3 over https. Credentials never go in
// the URL (they come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), and no
// error repeats the URL, so a mistyped secret never reaches a log.
func ParseURL(rawURL string) (Config, error) {
	raw := strings.TrimSpace(rawURL)
	if raw == "" {
		return Config{Backend: BackendRedis}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, urlError("is not a valid URL; want redis: or s3://BUCKET/PREFIX?endpoint=…")
	}
	switch u.Scheme {
	case "redis":
		if u.Opaque != "" || u.Host != "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
			return Config{}, urlError("redis: takes nothing after it: the blob store then uses the job Redis (THUMBNAILED_REDIS_URL)")
		}
		return Config{Backend: BackendRedis}, nil
	case "s3":
		return parseS3(u)
	default:
		return Config{}, urlError(fmt.Sprintf("scheme %q is not supported; want redis: or s3://", u.Scheme))
	}
}

func parseS3(u *url.URL) (Config, error) {
	c := Config{Backend: BackendS3, Endpoint: defaultEndpoint, Secure: true}
	if u.User != nil {
		return Config{}, urlError("credentials do not belong in the URL; set " + EnvAccessKey + " and " + EnvSecretKey)
	}
	if u.Opaque != "" || u.Host == "" {
		return Config{}, urlError("an s3 URL looks like s3://BUCKET/PREFIX?endpoint=http://host:port")
	}
	if u.Fragment != "" {
		return Config{}, urlError("an s3 URL has no #fragment")
	}
	c.Bucket = u.Host
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		return Config{}, urlError(fmt.Sprintf("bucket %q is not a valid S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)", c.Bucket))
	}
	c.Prefix = strings.Trim(u.Path, "/")
	if c.Prefix != "" {
		for seg := range strings.SplitSeq(c.Prefix, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsFunc(seg, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\\' }) {
				return Config{}, urlError("the prefix (the path after the bucket) has an empty, '.' or '..' segment or a control character")
			}
		}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, urlError("the query is malformed")
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(q)) {
		values := q[name]
		if len(values) != 1 {
			errs = append(errs, urlError(fmt.Sprintf("parameter %q is given %d times", name, len(values))))
			continue
		}
		v := values[0]
		switch name {
		case "endpoint":
			host, secure, err := parseEndpoint(v)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			c.Endpoint, c.Secure = host, secure
		case "region":
			if !regionPattern.MatchString(v) {
				errs = append(errs, urlError("region must be letters, digits, '.', '_' or '-' (like us-east-1)"))
				continue
			}
			c.Region = v
		case "path_style":
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, urlError("path_style must be true or false"))
				continue
			}
			c.PathStyle = b
		default:
			errs = append(errs, urlError(fmt.Sprintf("unknown parameter %q (known: endpoint, region, path_style)", name)))
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// parseEndpoint checks endpoint=: an http or https URL of a host and port only.
func parseEndpoint(v string) (host string, secure bool, err error) {
	e, perr := url.Parse(v)
	if perr != nil {
		return "", false, urlError("endpoint is not a URL; want endpoint=http://host:port or https://host")
	}
	if e.User != nil {
		return "", false, urlError("endpoint must not carry credentials; set " + EnvAccessKey + " and " + EnvSecretKey)
	}
	if e.Scheme != "http" && e.Scheme != "https" {
		return "", false, urlError("endpoint must start with http:// or https://")
	}
	if e.Host == "" || e.Hostname() == "" {
		return "", false, urlError("endpoint has no host")
	}
	if p := e.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", false, urlError("endpoint port must be 1-65535")
		}
	}
	if (e.Path != "" && e.Path != "/") || e.RawQuery != "" || e.Fragment != "" {
		return "", false, urlError("endpoint is a scheme, host and port only; the bucket and prefix go in the s3:// part")
	}
	return e.Host, e.Scheme == "https", nil
}

func urlError(msg string) error {
	return errors.New(EnvURL + ": " + msg)
}
