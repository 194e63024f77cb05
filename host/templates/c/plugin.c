// {{name}}: a Gatehouse plugin in C. It sets `x-greeting` on every request it
// sees. The hooks are the `exports_plugin_*` functions declared in the
// bindings `wit-bindgen c` generates from wit/plugin.wit (see build.sh).
//
// Ownership, as wit-bindgen's C bindings define it: arguments (strings, lists)
// belong to the callee and are freed with the matching `*_free`; what a hook
// returns is malloc'd and freed by the bindings after the call; borrowed
// handles (`ctx`, `req`, `resp`) must be dropped before a hook returns.

#define _GNU_SOURCE // memmem
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

static plugin_list_u8_t greeting;

// The config is JSON; this template only looks for "greeting":"<text>" (use
// a JSON parser for anything richer, e.g. examples/c-deny-list).
bool exports_plugin_init(plugin_string_t *config, plugin_features_t *ret, plugin_string_t *err) {
    static const char fallback[] = "hello from {{name}}";
    const char *text = fallback;
    size_t len = sizeof fallback - 1;
    const char *json = (const char *)config->ptr;
    const char *key = memmem(json, config->len, "\"greeting\"", 10);
    if (key) {
        const char *open = memchr(key + 10, '"', config->len - (size_t)(key + 10 - json));
        const char *close = open ? memchr(open + 1, '"', config->len - (size_t)(open + 1 - json)) : NULL;
        if (!close || close == open + 1) {
            plugin_string_free(config);
            plugin_string_dup(err, "greeting must be a non-empty string");
            return false;
        }
        text = open + 1;
        len = (size_t)(close - text);
    }
    greeting.ptr = malloc(len);
    memcpy(greeting.ptr, text, len);
    greeting.len = len;
    plugin_string_free(config);
    *ret = 0; // on-request only; or GATEHOUSE_PLUGIN_TYPES_FEATURES_RESPONSE_HEADERS | ...
    return true;
}

void exports_plugin_on_request(plugin_borrow_context_t ctx, plugin_borrow_request_head_t req,
                               plugin_request_action_t *ret) {
    plugin_string_t name;
    plugin_string_set(&name, "x-greeting");
    gatehouse_plugin_types_method_request_head_set_header(req, &name, &greeting);
    ret->tag = GATEHOUSE_PLUGIN_TYPES_REQUEST_ACTION_CONTINUE;
    gatehouse_plugin_types_context_drop_borrow(ctx);
    gatehouse_plugin_types_request_head_drop_borrow(req);
}

// Hooks not asked for in `init` are never called, but must be defined.
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
