package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxDepth is how deeply JSON objects and arrays may nest in a record,
// counting the envelope as level 1 and the body as level 2.
const MaxDepth = 64

// excluded holds the normalised names of properties that must never be
// stored (see IsExcludedProperty).
var excluded = []string{
	"password", "secret", "appkey", "applicationkey", "privatekey",
	"consumersecret", "apitoken", "clientsecret", "authoritykey",
}

// ExcludedProperties lists the property names a record must never contain,
// in their normalised form (lower case, no '_' or '-').
func ExcludedProperties() []string { return slices.Clone(excluded) }

// IsExcludedProperty reports whether a JSON property name is one that must
// never be stored: password, secret, app_key, application_key, private_key,
// consumer_secret, api_token, client_secret, authority_key. The match is on
// the whole name, ignoring case, '_' and '-' ("Private-Key", "APPKEY"
// match; "password_changed" does not).
func IsExcludedProperty(name string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r != '_' && r != '-' {
			b.WriteRune(r)
		}
	}
	return slices.Contains(excluded, b.String())
}

// parseStrict reads exactly one JSON value from data and returns it as a
// tree of map[string]any, []any, string, json.Number, bool and nil. It
// refuses syntax errors and trailing data (ErrMalformed), duplicate property
// names and nesting deeper than MaxDepth (*ValidationError). It also returns
// the path of the first excluded property, in document order, or "".
// root is the path of the value ("" for a record, "body" for a body) and
// depth its nesting level (0 for a record, 1 for a body).
func parseStrict(data []byte, root string, depth int) (any, string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, "", fmt.Errorf("%w: %s is not JSON: %v", ErrMalformed, where(root), jsonErrText(err))
	}
	off := dec.InputOffset()
	if len(bytes.TrimLeft(data[off:], " \t\r\n")) > 0 {
		return nil, "", fmt.Errorf("%w: %s has trailing data after byte %d; send exactly one JSON value", ErrMalformed, where(root), off)
	}
	w := walker{dec: json.NewDecoder(bytes.NewReader(raw))}
	w.dec.UseNumber()
	v, err := w.value(root, depth)
	return v, w.forbidden, err
}

func where(path string) string {
	if path == "" {
		return "the record"
	}
	return path
}

func jsonErrText(err error) string {
	if errors.Is(err, io.EOF) {
		return "it is empty"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

type walker struct {
	dec       *json.Decoder
	forbidden string
}

func (w *walker) value(path string, depth int) (any, error) {
	tok, err := w.dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, where(path), err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if depth >= MaxDepth {
		return nil, invalid(path, "depth", fmt.Sprintf("nests deeper than %d levels; flatten the data", MaxDepth))
	}
	switch d {
	case '{':
		m := map[string]any{}
		for w.dec.More() {
			kt, err := w.dec.Token()
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, where(path), err)
			}
			key, _ := kt.(string)
			child := joinPath(path, key)
			if _, dup := m[key]; dup {
				return nil, invalid(child, "unique", "appears twice in one object; send each property once")
			}
			if w.forbidden == "" && IsExcludedProperty(key) {
				w.forbidden = child
			}
			v, err := w.value(child, depth+1)
			if err != nil {
				return nil, err
			}
			m[key] = v
		}
		_, err = w.dec.Token() // '}'
		return m, err
	default: // '['
		a := []any{}
		for i := 0; w.dec.More(); i++ {
			v, err := w.value(path+"["+strconv.Itoa(i)+"]", depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err = w.dec.Token() // ']'
		return a, err
	}
}

func forbiddenErr(path string) error {
	return &ValidationError{
		Field:    path,
		Rule:     "forbidden",
		Msg:      "must never be stored: passwords, secrets and keys stay out of the replicated store; remove the property",
		sentinel: ErrForbiddenProperty,
	}
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

// checkShape compares a tree from parseStrict with the Go type it will be
// decoded into: every property must be a field (by its exact JSON name) and
// every value must have the field's JSON type. A null is accepted anywhere
// (it decodes to the zero value; the validation rules catch required
// fields). This gives errors that name the field, which encoding/json's
// unknown-field and type errors do not reliably do.
func checkShape(v any, t reflect.Type, path string) error {
	if v == nil {
		return nil
	}
	switch t {
	case rawType:
		return nil
	case timeType:
		s, ok := v.(string)
		if !ok {
			return invalid(path, "type", "must be an RFC 3339 time such as 2026-06-01T09:00:00Z")
		}
		q, _ := json.Marshal(s)
		var tm time.Time
		if err := tm.UnmarshalJSON(q); err != nil {
			return invalid(path, "format", fmt.Sprintf("%q is not an RFC 3339 time; write it like 2026-06-01T09:00:00Z", s))
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkShape(v, t.Elem(), path)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return invalid(path, "type", "must be a JSON object")
		}
		for _, k := range sortedKeys(m) {
			f, ok := fieldByJSONName(t, k)
			if !ok {
				return invalid(joinPath(path, k), "unknown", fmt.Sprintf(
					"is not a property of this record in schema version %d; remove it (or upgrade examnode if a newer node wrote it)", CurrentVersion))
			}
			if err := checkShape(m[k], f.Type, joinPath(path, k)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return invalid(path, "type", "must be a JSON object")
		}
		for _, k := range sortedKeys(m) {
			if err := checkShape(m[k], t.Elem(), joinPath(path, k)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			return invalid(path, "type", "must be a JSON array")
		}
		for i, e := range a {
			if err := checkShape(e, t.Elem(), path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		if _, ok := v.(string); !ok {
			return invalid(path, "type", "must be a string")
		}
		return nil
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return invalid(path, "type", "must be true or false")
		}
		return nil
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if _, err := strconv.ParseInt(string(n), 10, 64); !ok || err != nil {
			return invalid(path, "type", "must be a whole number")
		}
		return nil
	case reflect.Uint64:
		n, ok := v.(json.Number)
		if _, err := strconv.ParseUint(string(n), 10, 64); !ok || err != nil {
			return invalid(path, "type", "must be a whole number from 0 to 18446744073709551615")
		}
		return nil
	}
	return fmt.Errorf("schema: internal error: no shape rule for %s at %s", t, path)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// marshal encodes v compactly without HTML escaping, so that canonical
// encoding never grows a record's text.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
