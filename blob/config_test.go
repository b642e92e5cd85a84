package blob_test

import (
	"strings"
	"testing"

	"github.com/matryer/is"
	"github.com/thumbnailed/thumbnailed/blob"
)

func TestParseURLAcceptsRedisAndS3(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]blob.Config{
		"":            {Backend: "redis"},
		"  ":          {Backend: "redis"},
		"redis:":      {Backend: "redis"},
		"s3://thumbs": {Backend: "s3", Bucket: "thumbs", Endpoint: "s3.amazonaws.com", Secure: true},
		"s3://thumbs/?region=eu-west-1": {
			Backend: "s3", Bucket: "thumbs", Endpoint: "s3.amazonaws.com", Secure: true, Region: "eu-west-1"},
		"s3://thumbs/prod/v1/?endpoint=http://127.0.0.1:7070&region=us-east-1&path_style=true": {
			Backend: "s3", Bucket: "thumbs", Prefix: "prod/v1", Endpoint: "127.0.0.1:7070", Region: "us-east-1", PathStyle: true},
		"s3://my.bucket-1/p?endpoint=https://storage.example.com/&path_style=false": {
			Backend: "s3", Bucket: "my.bucket-1", Prefix: "p", Endpoint: "storage.example.com", Secure: true},
		"s3://b12/x?endpoint=http://[::1]:9000": {
			Backend: "s3", Bucket: "b12", Prefix: "x", Endpoint: "[::1]:9000"},
	} {
		t.Run(raw, func(t *testing.T) {
			is := is.New(t)
			got, err := blob.ParseURL(raw)
			is.NoErr(err)
			is.Equal(got, want)
		})
	}
}

func TestParseURLRefusesWithTheVariableNameAndNoSecret(t *testing.T) {
	t.Parallel()
	const secret = "Sup3rS3cret"
	for raw, mentions := range map[string]string{
		"redis://:" + secret + "@localhost:6379":    "redis: takes nothing",
		"redis:" + secret:                           "redis: takes nothing",
		"ftp://bucket/" + secret:                    `"ftp"`,
		"https://s3.example.com/bucket?x=" + secret: `"https"`,
		"s3://AKIA:" + secret + "@thumbs/p":         "AWS_SECRET_ACCESS_KEY",
		"s3://:" + secret + "@thumbs/p":             "credentials",
		"s3:thumbs":                                 "s3://BUCKET",
		"s3:///p":                                   "s3://BUCKET",
		"s3://Thumbs_" + "x":                        "not a valid S3 bucket name",
		"s3://ab":                                   "not a valid S3 bucket name",
		"s3://thumbs/a//b":                          "prefix",
		"s3://thumbs/a/../b":                        "prefix",
		"s3://thumbs/p#" + secret:                   "fragment",
		"s3://thumbs/p?endpoint=ftp://host:21":      "http:// or https://",
		"s3://thumbs/p?endpoint=http://user:" + secret + "@host:9000": "must not carry credentials",
		"s3://thumbs/p?endpoint=http://host:9000/" + secret:           "scheme, host and port only",
		"s3://thumbs/p?endpoint=http://host:9000?token=" + secret:     "scheme, host and port only",
		"s3://thumbs/p?endpoint=http://:9000":                         "no host",
		"s3://thumbs/p?endpoint=http://host:99999":                    "port",
		"s3://thumbs/p?endpoint=host:9000":                            "http:// or https://",
		"s3://thumbs/p?endpoint=%zz" + secret:                         "malformed",
		"s3://thumbs/p?path_style=" + secret:                          "path_style must be true or false",
		"s3://thumbs/p?region=us east" + secret:                       "region",
		"s3://thumbs/p?region=a&region=b":                             `"region" is given 2 times`,
		"s3://thumbs/p?secret_key=" + secret:                          `unknown parameter "secret_key"`,
		"::" + secret:                                                 "not a valid URL",
	} {
		t.Run(raw, func(t *testing.T) {
			is := is.New(t)
			_, err := blob.ParseURL(raw)
			is.True(err != nil)
			msg := err.Error()
			t.Log(msg)
			is.True(strings.HasPrefix(msg, "THUMBNAILED_STORAGE_URL: ")) // names the variable
			is.True(strings.Contains(msg, mentions))                     // says what is wrong
			is.True(!strings.Contains(msg, secret))                      // never repeats a secret
		})
	}
}

// A URL with several mistakes hears about all of them at once.
func TestParseURLNamesEveryProblem(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	_, err := blob.ParseURL("s3://thumbs/p?path_style=maybe&endpoint=gopher://x&bogus=1")
	is.True(err != nil)
	for _, problem := range []string{`unknown parameter "bogus"`, "endpoint must start with http:// or https://", "path_style must be true or false"} {
		is.True(strings.Contains(err.Error(), "THUMBNAILED_STORAGE_URL: "+problem))
	}
}

func TestConfigStringHasNoSecrets(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c, err := blob.ParseURL("s3://thumbs/prod?endpoint=https://minio.internal:9000")
	is.NoErr(err)
	is.Equal(c.String(), "s3 thumbs/prod at minio.internal:9000")
	c, err = blob.ParseURL("s3://thumbs")
	is.NoErr(err)
	is.Equal(c.String(), "s3 thumbs at s3.amazonaws.com")
	c, err = blob.ParseURL("")
	is.NoErr(err)
	is.Equal(c.String(), "redis")
}
