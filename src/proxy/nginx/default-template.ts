/**
 * teal's nginx template (Mustache): the whole routing table as one file included in nginx's `http`
 * block. docs/nginx.md shows it as the example for writing your own and documents every field it
 * uses (render.ts `TemplateView`); a test keeps the two the same.
 *
 * It does not print the table's revision: a new revision with the same routes then renders the
 * same text, and the switch skips the reload.
 */
export const DEFAULT_TEMPLATE = `# Written by teal from its routing table: edits are overwritten on the next apply.
# Included in nginx's http block.

# One line per request, read by teal for its per-pool stats. A template of your own must keep
# this format's name and fields: pool, status, request_time, upstream_status, upstream_header_time.
log_format teal_access escape=json '{"pool":"$teal_pool","status":"$status",'
    '"request_time":"$request_time","upstream_status":"$upstream_status",'
    '"upstream_header_time":"$upstream_header_time"}';

# The pool a request went to, from the upstream it was proxied to.
map $proxy_host $teal_pool {
    default "-";
{{#upstreams}}
    {{name}} {{pool}};
{{/upstreams}}
}

# Websockets: pass Upgrade on; other requests keep the upstream connection alive.
map $http_upgrade $teal_connection {
    default upgrade;
    "" "";
}

# The client's X-Request-Id, or one nginx makes up.
map $http_x_request_id $teal_request_id {
    default $http_x_request_id;
    "" $request_id;
}

# An HTTP/1.0 request may come without a Host.
map $http_host $teal_host_header {
    default $http_host;
    "" $host;
}

# The Host the app gets: an absolute-form request target's authority wins over the Host header
# (RFC 9112 3.2.2), as it does for nginx's own server_name routing, so both read the same host.
map $request $teal_host {
    "~*^\\S+ https?://(?<teal_authority>[^/?#\\s]+)" $teal_authority;
    default $teal_host_header;
}

# Forwarded headers are believed only from proxy.trustedProxies (1); from anyone else they are
# replaced with what nginx saw, so an app reading X-Forwarded-For reads the truth.
geo $remote_addr $teal_trusted {
    default 0;
{{#trustedProxies}}
    {{.}} 1;
{{/trustedProxies}}
}
map $teal_trusted $teal_forwarded_for {
    1 $proxy_add_x_forwarded_for;
    default $remote_addr;
}
map $http_x_forwarded_proto $teal_given_proto {
    default $http_x_forwarded_proto;
    "" $scheme;
}
map $teal_trusted $teal_forwarded_proto {
    1 $teal_given_proto;
    default $scheme;
}
map $http_x_forwarded_host $teal_given_host {
    default $http_x_forwarded_host;
    "" $teal_host;
}
map $teal_trusted $teal_forwarded_host {
    1 $teal_given_host;
    default $teal_host;
}
map $http_x_real_ip $teal_given_real_ip {
    default $http_x_real_ip;
    "" $remote_addr;
}
map $teal_trusted $teal_real_ip {
    1 $teal_given_real_ip;
    default $remote_addr;
}
map $teal_trusted $teal_forwarded {
    1 $http_forwarded;
    default "";
}
{{#upstreams}}

# {{service}}: {{slot}}, release {{release}} ({{version}})
upstream {{name}} {
{{#servers}}
    server {{address}};
{{/servers}}
    keepalive 32;
    # Below Node's default 5 s server keep-alive, so nginx never reuses a connection the app is closing.
    keepalive_timeout 4s;
}
{{/upstreams}}
{{#services}}

# {{service}} on the public listener: the live pool (-503: nothing is live), or the slot a preview
# link's cookie grants (teal takes a grant out when it expires). X-Teal-Slot means nothing there:
# any client could send it.
map $cookie_teal_preview {{variable}} {
    default {{liveTarget}};
{{#grants}}
    ~^{{id}}$ {{target}};
{{/grants}}
}

# {{service}} on the preview listener (loopback by default): without X-Teal-Slot, the live pool;
# with X-Teal-Slot: blue|green, that slot's pool (-404: nothing in that slot).
map $http_x_teal_slot {{previewVariable}} {
    default -404;
    "" {{liveTarget}};
{{#slots}}
    {{slot}} {{target}};
{{/slots}}
}
{{/services}}

# Preview links (/.teal/preview?grant=<id>): a grant in the table sets the cookie, anything else 403.
# Grants are matched as exact, case-sensitive regexes: 64-character keys would outgrow nginx's
# default map_hash_bucket_size.
map $arg_grant $teal_preview_expires {
    default "";
{{#grants}}
    ~^{{id}}$ "{{expires}}";
{{/grants}}
}

map $arg_grant $teal_preview_to {
    default /;
{{#grants}}
    ~^{{id}}$ {{path}};
{{/grants}}
}
{{#servers}}

server {
    listen {{listen}}{{#default}} default_server{{/default}};
    server_name {{serverName}};
    access_log {{accessLog}} teal_access;

    proxy_http_version 1.1;
    proxy_set_header Host $teal_host;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $teal_connection;
    proxy_set_header X-Forwarded-For $teal_forwarded_for;
    proxy_set_header X-Forwarded-Proto $teal_forwarded_proto;
    proxy_set_header X-Forwarded-Host $teal_forwarded_host;
    proxy_set_header X-Real-IP $teal_real_ip;
    proxy_set_header Forwarded $teal_forwarded;
    proxy_set_header X-Request-Id $teal_request_id;
    proxy_set_header X-Teal-Slot "";
    proxy_hide_header X-Request-Id;
    add_header X-Request-Id $teal_request_id always;
    # Event streams and other long answers reach the client as the app writes them.
    proxy_buffering off;
    # Websockets and event streams may stay quiet for a while.
    proxy_read_timeout 1h;
    proxy_send_timeout 1h;
{{#locations}}

    location {{match}} {
        if ({{variable}} = "-503") { return 503; }
        if ({{variable}} = "-404") { return 404; }
        proxy_pass http://{{variable}};
    }
{{/locations}}
{{^preview}}

    location = /.teal/preview {
        if ($teal_preview_expires = "") { return 403; }
        add_header Set-Cookie "teal_preview=$arg_grant; Path=/; Expires=$teal_preview_expires; HttpOnly; SameSite=Lax" always;
        add_header Cache-Control no-store always;
        return 302 $teal_preview_to;
    }
{{/preview}}
{{#notFound}}

    location / {
        return 404;
    }
{{/notFound}}
}
{{/servers}}
`;
