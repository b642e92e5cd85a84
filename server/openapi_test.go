package server

import (
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"
	"gopkg.in/yaml.v3"

	"github.com/thumbnailed/thumbnailed/codes"
)

// openAPIDoc is the part of openapi.yaml these tests read.
type openAPIDoc struct {
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]struct {
				Enum []string `yaml:"enum"`
			} `yaml:"properties"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

func readOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// Issue 11, item 3: the codes a client can see are listed once, in package
// codes, and openapi.yaml enumerates exactly that list, in its order.
func TestOpenAPIEnumeratesTheCodesList(t *testing.T) {
	is := is.New(t)
	schemas := readOpenAPI(t).Components.Schemas
	for _, c := range []struct {
		schema, property string
		kind             codes.Kind
	}{
		{"Problem", "code", codes.API},
		{"JobError", "code", codes.Job},
		{"Delivery", "error_code", codes.Delivery},
	} {
		got := schemas[c.schema].Properties[c.property].Enum
		want := codes.Names(c.kind)
		if !slices.Equal(got, want) {
			t.Errorf("openapi.yaml %s.%s enumerates\n  %v\nbut package codes lists the %s codes\n  %v", c.schema, c.property, got, c.kind, want)
		}
	}
	// The check means something: every kind has codes, and no code is
	// listed twice within its kind.
	for _, kind := range []codes.Kind{codes.API, codes.Job, codes.Delivery} {
		names := codes.Names(kind)
		is.True(len(names) > 5)
		sorted := slices.Clone(names)
		slices.Sort(sorted)
		is.Equal(len(slices.Compact(sorted)), len(names)) // no code twice in one kind
	}
}

func TestOpenAPIDocumentsMethodNotAllowedAndStorageTrouble(t *testing.T) {
	// Every operation may answer 405 (its path, another method); every /v1
	// operation may answer 503 (Redis or the blob store away).
	for path, ops := range readOpenAPI(t).Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			var o struct {
				Responses map[string]any `yaml:"responses"`
			}
			if err := op.Decode(&o); err != nil {
				t.Fatal(err)
			}
			if _, ok := o.Responses["405"]; !ok {
				t.Errorf("%s %s documents no 405", method, path)
			}
			if _, ok := o.Responses["503"]; !ok && strings.HasPrefix(path, "/v1/") {
				t.Errorf("%s %s documents no 503", method, path)
			}
		}
	}
}
