// Command goupstream is the strict Go upstream of haltgate's differential tests.
//
// It reads every request the way a typical Go service does (net/http and encoding/json,
// standard library only) and says what it executed: one JSON line per request in the
// file named by -log, written before the answer is sent, and the same object in the
// answer. The tests send identical requests through the sidecar and compare what the
// sidecar decided with what this server executed.
//
// What it reads, like real Go services:
//   - method: r.Method, or on POST a method-override header (X-HTTP-Method-Override,
//     X-HTTP-Method, X-Method-Override), a _method query parameter or a _method field of
//     a form body, as many APIs and frameworks honour;
//   - path: r.URL.Path (percent-decoded by net/url), or the path of an X-Original-URL or
//     X-Rewrite-URL header (IIS-style rewrites), under the X-Forwarded-Prefix header's
//     path when one is sent (as Spring's ForwardedHeaderFilter rebuilds the request URI),
//     routed on path.Clean of it, as http.FileServer and http.StripPrefix-style handlers do;
//   - query: url.ParseQuery, the first value of the "action" parameter (r.URL.Query().Get);
//     pairs with a ';' are dropped, as Go 1.17+ does;
//   - JSON: encoding/json into structs, so keys match case-insensitively and the last
//     of several matching keys wins;
//   - LLM calls: POST to a route ending in /chat/completions, /completions, /responses,
//     /embeddings or /messages whose body names a model; under .../deployments/NAME/ (Azure
//     OpenAI) the deployment in the path is the model served, whatever the body says;
//   - MCP: POST to a route ending in /mcp, a JSON-RPC message or batch; every element is
//     dispatched by its exact method name.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
)

const maxBody = 8 << 20

var overrideHeaders = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

var rewriteHeaders = []string{"X-Original-URL", "X-Rewrite-URL"}

var llmSuffixes = []string{"/chat/completions", "/completions", "/responses", "/embeddings", "/messages"}

// rpcCall is what the server executed for one JSON-RPC element.
type rpcCall struct {
	Method string `json:"method"`
	Tool   string `json:"tool,omitempty"`
	// Path is the tool's "path" argument as a Go tool decoding its arguments into a
	// struct reads it (absent: no such argument).
	Path *string `json:"path,omitempty"`
	URI  string  `json:"uri,omitempty"`
	Name string  `json:"name,omitempty"`
}

// reading is one executed request, as logged and answered.
type reading struct {
	Upstream      string    `json:"upstream"`
	Tag           string    `json:"tag"`
	Method        string    `json:"method"`
	WireMethod    string    `json:"wire_method"`
	Path          string    `json:"path"`
	Route         string    `json:"route"`
	Endpoint      string    `json:"endpoint"`
	Model         *string   `json:"model"`
	ModelResolved *string   `json:"model_resolved"`
	RPC           []rpcCall `json:"rpc"`
	Action        *string   `json:"action"`
	Error         string    `json:"error,omitempty"`
}

type llmRequest struct {
	Model    *string         `json:"model"`
	Messages json.RawMessage `json:"messages"`
	Input    json.RawMessage `json:"input"`
	Prompt   json.RawMessage `json:"prompt"`
}

type rpcMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

type rpcParams struct {
	Name      string          `json:"name"`
	URI       string          `json:"uri"`
	Arguments json.RawMessage `json:"arguments"`
}

type toolArguments struct {
	Path *string `json:"path"`
}

type server struct {
	name string
	mu   sync.Mutex
	out  *os.File
}

// resolveModel is the model a lenient router would serve: trimmed, lower case, without
// a provider prefix ("openai/gpt-5" -> "gpt-5").
func resolveModel(m string) string {
	m = strings.ToLower(strings.TrimSpace(m))
	if i := strings.LastIndex(m, "/"); i >= 0 {
		m = m[i+1:]
	}
	return m
}

func effectiveMethod(r *http.Request, body []byte) string {
	if r.Method != http.MethodPost {
		return r.Method
	}
	for _, h := range overrideHeaders {
		if v := strings.TrimSpace(r.Header.Get(h)); v != "" {
			return strings.ToUpper(v)
		}
	}
	if v := strings.TrimSpace(r.URL.Query().Get("_method")); v != "" {
		return strings.ToUpper(v)
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if form, err := url.ParseQuery(string(body)); err == nil {
			if v := strings.TrimSpace(form.Get("_method")); v != "" {
				return strings.ToUpper(v)
			}
		}
	}
	return r.Method
}

// effectivePath is r.URL.Path, or the path a rewrite header names, under the path an
// X-Forwarded-Prefix header names.
func effectivePath(r *http.Request) string {
	p := r.URL.Path
	for _, h := range rewriteHeaders {
		if v := r.Header.Get(h); v != "" {
			if u, err := url.Parse(v); err == nil {
				p = u.Path
				break
			}
		}
	}
	if prefix := r.Header.Get("X-Forwarded-Prefix"); prefix != "" {
		p = strings.TrimRight(prefix, "/") + p
	}
	return p
}

// queryAction is the "action" query parameter as a Go service reads it (first value).
func queryAction(r *http.Request) *string {
	values, _ := url.ParseQuery(r.URL.RawQuery)
	if v, ok := values["action"]; ok && len(v) > 0 {
		return &v[0]
	}
	return nil
}

func route(p string) string {
	if p == "" {
		return "/"
	}
	return path.Clean(p)
}

func hasLLMSuffix(r string) bool {
	for _, s := range llmSuffixes {
		if strings.HasSuffix(r, s) {
			return true
		}
	}
	return false
}

// deployment is the NAME of a route .../deployments/NAME/<endpoint> ("" for none).
func deployment(route string) string {
	parts := strings.Split(route, "/")
	for i := len(parts) - 3; i >= 0; i-- {
		if parts[i] == "deployments" {
			return parts[i+1]
		}
	}
	return ""
}

func readLLM(body []byte, rd *reading) {
	var req llmRequest
	if err := json.Unmarshal(body, &req); err != nil {
		rd.Error = "json: " + err.Error()
		return
	}
	if d := deployment(rd.Route); d != "" {
		req.Model = &d
	}
	if req.Model == nil {
		rd.Error = "no model"
		return
	}
	rd.Endpoint = "llm"
	model := *req.Model
	resolved := resolveModel(model)
	rd.Model, rd.ModelResolved = &model, &resolved
}

func readRPC(body []byte, rd *reading) (ids []json.RawMessage, batch bool) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	var elements []json.RawMessage
	batch = len(trimmed) > 0 && trimmed[0] == '['
	if batch {
		if err := json.Unmarshal(trimmed, &elements); err != nil {
			rd.Error = "json: " + err.Error()
			return nil, batch
		}
	} else {
		elements = []json.RawMessage{json.RawMessage(trimmed)}
	}
	rd.Endpoint = "mcp"
	rd.RPC = []rpcCall{}
	ids = make([]json.RawMessage, 0, len(elements))
	for _, raw := range elements {
		var msg rpcMessage
		if err := json.Unmarshal(raw, &msg); err != nil || msg.Method == "" {
			continue // a response or garbage: nothing executed
		}
		call := rpcCall{Method: msg.Method}
		var params rpcParams
		if len(msg.Params) > 0 && json.Unmarshal(msg.Params, &params) == nil {
			switch msg.Method {
			case "tools/call":
				call.Tool = params.Name
				var args toolArguments
				if len(params.Arguments) > 0 && json.Unmarshal(params.Arguments, &args) == nil {
					call.Path = args.Path
				}
			case "resources/read", "resources/subscribe":
				call.URI = params.URI
			case "prompts/get":
				call.Name = params.Name
			}
		}
		rd.RPC = append(rd.RPC, call)
		if len(msg.ID) > 0 && string(msg.ID) != "null" {
			ids = append(ids, msg.ID)
		}
	}
	return ids, batch
}

func (s *server) record(rd *reading) {
	line, _ := json.Marshal(rd)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.out.Write(append(line, '\n')); err != nil {
		log.Printf("log write: %v", err)
	}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	p := effectivePath(r)
	rd := &reading{
		Upstream:   s.name,
		Tag:        r.Header.Get("X-Differential-Tag"),
		Method:     effectiveMethod(r, body),
		WireMethod: r.Method,
		Path:       p,
		Route:      route(p),
		Endpoint:   "http",
		Action:     queryAction(r),
	}
	var ids []json.RawMessage
	batch := false
	if rd.Method == http.MethodPost {
		switch {
		case strings.HasSuffix(rd.Route, "/mcp"):
			ids, batch = readRPC(body, rd)
		case hasLLMSuffix(rd.Route):
			readLLM(body, rd)
		}
	}
	s.record(rd)
	w.Header().Set("Content-Type", "application/json")
	switch rd.Endpoint {
	case "llm":
		json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-diff", "object": "chat.completion", "model": *rd.ModelResolved,
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": "ok"}}},
			"usage":    map[string]int{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
			"executed": rd,
		})
	case "mcp":
		answers := make([]any, 0, len(ids))
		for _, id := range ids {
			answers = append(answers, map[string]any{"jsonrpc": "2.0", "id": id,
				"result": map[string]any{"content": []any{map[string]any{"type": "text", "text": "ok"}},
					"isError": false}})
		}
		switch {
		case len(ids) == 0:
			w.WriteHeader(http.StatusAccepted)
		case batch:
			json.NewEncoder(w).Encode(answers)
		default:
			json.NewEncoder(w).Encode(answers[0])
		}
	default:
		json.NewEncoder(w).Encode(map[string]any{"executed": rd})
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "addresses to listen on, comma-separated")
	logPath := flag.String("log", "", "file to append one JSON line per executed request to")
	name := flag.String("name", "go", "upstream name written into each reading")
	flag.Parse()
	if *logPath == "" {
		fmt.Fprintln(os.Stderr, "goupstream: -log is required")
		os.Exit(2)
	}
	out, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goupstream:", err)
		os.Exit(1)
	}
	handler := &server{name: *name, out: out}
	errs := make(chan error)
	for _, addr := range strings.Split(*listen, ",") {
		srv := &http.Server{Addr: addr, Handler: handler}
		go func() { errs <- srv.ListenAndServe() }()
	}
	fmt.Printf("goupstream listening on %s\n", *listen)
	log.Fatal(<-errs)
}
