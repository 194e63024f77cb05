// Path deny list, in C.
//
// Answers requests whose path matches a pattern itself, before any later plugin
// or the upstream sees them. Paths are normalised first, so `//admin`,
// `/public/../admin` and `/%61dmin` are all `/admin`.
//
// Config:
//   deny:        patterns: "/exact", "/prefix/*" (the prefix and below),
//                "*.suffix" (any path ending so); at most 256
//   status:      403 (default) or any 4xx, e.g. 404 to hide what exists
//   ignore_case: compare case-insensitively (default false)

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define MAX_PATTERNS 256
#define MAX_PATH 8192

typedef enum { EXACT, PREFIX, SUFFIX } kind_t;

typedef struct {
    kind_t kind;
    char *text; // without the `*`
    size_t len;
} pattern_t;

static pattern_t patterns[MAX_PATTERNS];
static size_t pattern_count;
static uint16_t deny_status = 403;
static bool ignore_case;

// ---- a small JSON reader: just enough for the config object ----

typedef struct {
    const char *p;
    const char *end;
    const char *error;
} json_t;

static void skip_ws(json_t *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static bool expect(json_t *j, char c) {
    skip_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Reads a string into a new NUL-terminated buffer (ASCII escapes only).
static char *read_string(json_t *j) {
    if (!expect(j, '"')) {
        j->error = "expected a string";
        return NULL;
    }
    char *out = malloc((size_t)(j->end - j->p) + 1);
    size_t n = 0;
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if (c == '\\' && j->p < j->end) {
            char e = *j->p++;
            switch (e) {
            case '"': case '\\': case '/': c = e; break;
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'u':
                if (j->end - j->p >= 4 && j->p[0] == '0' && j->p[1] == '0' && hex(j->p[2]) >= 0 && hex(j->p[3]) >= 0) {
                    c = (char)(hex(j->p[2]) * 16 + hex(j->p[3]));
                    j->p += 4;
                    break;
                }
                /* fallthrough */
            default:
                j->error = "unsupported escape in string";
                free(out);
                return NULL;
            }
        }
        out[n++] = c;
    }
    if (!expect(j, '"')) {
        j->error = "unterminated string";
        free(out);
        return NULL;
    }
    out[n] = 0;
    return out;
}

// Skips any JSON value (for keys this plugin does not know).
static void skip_value(json_t *j) {
    skip_ws(j);
    int depth = 0;
    do {
        if (j->p >= j->end) {
            j->error = "truncated JSON";
            return;
        }
        char c = *j->p;
        if (c == '"') {
            free(read_string(j));
            if (j->error) return;
            continue;
        }
        if (c == '{' || c == '[') depth++;
        if (c == '}' || c == ']') depth--;
        j->p++;
        if (depth == 0 && (c == ',' || c == '}' || c == ']')) {
            j->p--; // leave the delimiter to the caller
            return;
        }
    } while (depth > 0 || (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']'));
}

static bool add_pattern(const char *text, const char **error) {
    size_t len = strlen(text);
    if (pattern_count == MAX_PATTERNS) {
        *error = "deny: at most 256 patterns";
        return false;
    }
    pattern_t *pat = &patterns[pattern_count];
    if (len >= 2 && text[0] == '*' && strchr(text + 1, '*') == NULL) {
        pat->kind = SUFFIX;
        pat->text = strdup(text + 1);
    } else if (len >= 2 && text[0] == '/' && text[len - 1] == '*' && strchr(text, '*') == text + len - 1) {
        pat->kind = PREFIX;
        pat->text = strndup(text, len - 1);
    } else if (len >= 1 && text[0] == '/' && strchr(text, '*') == NULL) {
        pat->kind = EXACT;
        pat->text = strdup(text);
    } else {
        *error = "deny: each pattern is \"/exact\", \"/prefix/*\" or \"*.suffix\"";
        return false;
    }
    pat->len = strlen(pat->text);
    if (ignore_case)
        for (size_t i = 0; i < pat->len; i++)
            if (pat->text[i] >= 'A' && pat->text[i] <= 'Z') pat->text[i] += 32;
    pattern_count++;
    return true;
}

static const char *parse_config(const char *text, size_t len) {
    json_t j = {text, text + len, NULL};
    char *deny[MAX_PATTERNS + 1];
    size_t deny_count = 0;
    bool have_deny = false;
    const char *error = NULL;
    if (!expect(&j, '{')) return "config must be a JSON object";
    if (!expect(&j, '}')) {
        do {
            char *key = read_string(&j);
            if (!key) return j.error;
            if (!expect(&j, ':')) {
                free(key);
                return "expected ':'";
            }
            if (strcmp(key, "deny") == 0) {
                have_deny = true;
                if (!expect(&j, '[')) error = "deny: a list of patterns";
                else if (!expect(&j, ']')) {
                    do {
                        char *s = read_string(&j);
                        if (!s) { error = "deny: a list of patterns"; break; }
                        if (deny_count == MAX_PATTERNS) { free(s); error = "deny: at most 256 patterns"; break; }
                        deny[deny_count++] = s;
                    } while (expect(&j, ','));
                    if (!error && !expect(&j, ']')) error = "deny: a list of patterns";
                }
            } else if (strcmp(key, "status") == 0) {
                skip_ws(&j);
                char *endp;
                long v = strtol(j.p, &endp, 10);
                if (endp == j.p || v < 400 || v > 499) error = "status: a 4xx status code";
                j.p = endp;
                deny_status = (uint16_t)v;
            } else if (strcmp(key, "ignore_case") == 0) {
                skip_ws(&j);
                if ((size_t)(j.end - j.p) >= 4 && strncmp(j.p, "true", 4) == 0) { ignore_case = true; j.p += 4; }
                else if ((size_t)(j.end - j.p) >= 5 && strncmp(j.p, "false", 5) == 0) { ignore_case = false; j.p += 5; }
                else error = "ignore_case: true or false";
            } else {
                skip_value(&j);
                if (j.error) error = j.error;
            }
            free(key);
        } while (!error && expect(&j, ','));
        if (!error && !expect(&j, '}')) error = "malformed JSON object";
    }
    if (!error && !have_deny) error = "deny: a list of patterns is required";
    for (size_t i = 0; i < deny_count; i++) {
        if (!error) add_pattern(deny[i], &error);
        free(deny[i]);
    }
    return error;
}

// ---- matching ----

// Percent-decodes, collapses `//`, resolves `.` and `..`, and folds case when
// asked. Returns the length written to `out` (at least "/").
static size_t normalise(const uint8_t *path, size_t len, char *out) {
    size_t n = 0;
    out[n++] = '/';
    size_t i = 0;
    while (i < len) {
        // One segment, decoded.
        char seg[MAX_PATH];
        size_t s = 0;
        while (i < len && path[i] == '/') i++;
        while (i < len && path[i] != '/' && s < sizeof seg) {
            char c = (char)path[i++];
            if (c == '%' && i + 1 < len && hex(path[i]) >= 0 && hex(path[i + 1]) >= 0) {
                c = (char)(hex(path[i]) * 16 + hex(path[i + 1]));
                i += 2;
            }
            if (ignore_case && c >= 'A' && c <= 'Z') c += 32;
            seg[s++] = c;
        }
        if (s == 0 || (s == 1 && seg[0] == '.')) continue;
        if (s == 2 && seg[0] == '.' && seg[1] == '.') {
            while (n > 1 && out[n - 1] != '/') n--; // drop the last segment
            if (n > 1) n--;                         // and its slash
            continue;
        }
        if (n > 1) out[n++] = '/';
        if (n + s >= MAX_PATH) s = MAX_PATH - n - 1;
        memcpy(out + n, seg, s);
        n += s;
    }
    // Keep a trailing slash: `/admin/` is under `/admin/*`.
    if (len > 1 && path[len - 1] == '/' && n > 1 && n + 1 < MAX_PATH) out[n++] = '/';
    return n;
}

static bool denied(const char *path, size_t len) {
    for (size_t i = 0; i < pattern_count; i++) {
        const pattern_t *p = &patterns[i];
        switch (p->kind) {
        case EXACT:
            if (len == p->len && memcmp(path, p->text, len) == 0) return true;
            break;
        case PREFIX:
            // "/admin/*" covers "/admin" itself and everything below it.
            if (len >= p->len && memcmp(path, p->text, p->len) == 0) return true;
            if (p->len > 1 && len == p->len - 1 && memcmp(path, p->text, len) == 0) return true;
            break;
        case SUFFIX:
            if (len >= p->len && memcmp(path + len - p->len, p->text, p->len) == 0) return true;
            break;
        }
    }
    return false;
}

// ---- the plugin world ----

bool exports_plugin_init(plugin_string_t *config, plugin_features_t *ret, plugin_string_t *err) {
    const char *error = parse_config((const char *)config->ptr, config->len);
    plugin_string_free(config);
    if (error) {
        plugin_string_dup(err, error);
        return false;
    }
    *ret = 0; // on-request only
    return true;
}

static void set_header(gatehouse_plugin_types_header_t *h, const char *name, const char *value) {
    plugin_string_dup(&h->name, name);
    size_t len = strlen(value);
    h->value.ptr = malloc(len);
    memcpy(h->value.ptr, value, len);
    h->value.len = len;
}

void exports_plugin_on_request(plugin_borrow_context_t ctx, plugin_borrow_request_head_t req,
                               plugin_request_action_t *ret) {
    plugin_string_t path;
    gatehouse_plugin_types_method_request_head_path(req, &path);
    static char normal[MAX_PATH];
    size_t len = normalise(path.ptr, path.len, normal);
    plugin_string_free(&path);

    if (!denied(normal, len)) {
        ret->tag = GATEHOUSE_PLUGIN_TYPES_REQUEST_ACTION_CONTINUE;
        gatehouse_plugin_types_context_drop_borrow(ctx);
        gatehouse_plugin_types_request_head_drop_borrow(req);
        return;
    }
    plugin_string_t id;
    gatehouse_plugin_types_method_context_request_id(ctx, &id);
    // {"error":"path_denied","request_id":"<id>"} without stdio, which would
    // pull WASI file descriptors into a plugin that needs none.
    static const char head[] = "{\"error\":\"path_denied\",\"request_id\":\"";
    size_t body_len = sizeof head - 1 + id.len + 2;
    char *body = malloc(body_len);
    memcpy(body, head, sizeof head - 1);
    memcpy(body + sizeof head - 1, id.ptr, id.len);
    memcpy(body + sizeof head - 1 + id.len, "\"}", 2);
    plugin_string_free(&id);

    ret->tag = GATEHOUSE_PLUGIN_TYPES_REQUEST_ACTION_RESPOND;
    gatehouse_plugin_types_response_t *r = &ret->val.respond;
    r->status = deny_status;
    r->headers.len = 1;
    r->headers.ptr = malloc(sizeof(gatehouse_plugin_types_header_t));
    set_header(&r->headers.ptr[0], "content-type", "application/json");
    r->body.ptr = (uint8_t *)body;
    r->body.len = body_len;
    gatehouse_plugin_types_context_drop_borrow(ctx);
    gatehouse_plugin_types_request_head_drop_borrow(req);
}

// Hooks the plugin does not ask for in `init` are never called.
void exports_plugin_on_request_body(plugin_borrow_context_t ctx, plugin_borrow_request_head_t req,
                                    plugin_list_u8_t *body, plugin_body_action_t *ret) {
    plugin_list_u8_free(body);
    gatehouse_plugin_types_context_drop_borrow(ctx);
    gatehouse_plugin_types_request_head_drop_borrow(req);
    ret->tag = GATEHOUSE_PLUGIN_TYPES_BODY_ACTION_CONTINUE;
}

void exports_plugin_on_response(plugin_borrow_context_t ctx, plugin_borrow_request_head_t req,
                                plugin_borrow_response_head_t resp, plugin_response_action_t *ret) {
    gatehouse_plugin_types_context_drop_borrow(ctx);
    gatehouse_plugin_types_request_head_drop_borrow(req);
    gatehouse_plugin_types_response_head_drop_borrow(resp);
    ret->tag = GATEHOUSE_PLUGIN_TYPES_RESPONSE_ACTION_CONTINUE;
}

void exports_plugin_on_response_body(plugin_borrow_context_t ctx, plugin_borrow_response_head_t resp,
                                     plugin_list_u8_t *body, plugin_body_action_t *ret) {
    plugin_list_u8_free(body);
    gatehouse_plugin_types_context_drop_borrow(ctx);
    gatehouse_plugin_types_response_head_drop_borrow(resp);
    ret->tag = GATEHOUSE_PLUGIN_TYPES_BODY_ACTION_CONTINUE;
}
