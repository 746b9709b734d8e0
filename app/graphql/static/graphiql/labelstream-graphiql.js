// Labelstream's GraphiQL page (plain JavaScript over the globals of vendor.js; no build step).
//
// * The headers tab is kept in localStorage under STORAGE_KEY: the key entered once survives
//   reloads. The placeholder is shown only when nothing was ever saved, and is never saved.
// * No request leaves without a key: until the headers carry an Authorization that is not the
//   placeholder, the fetcher answers locally with a hint (no 401 on load).
// * A new key makes a new fetcher, on which GraphiQL fetches the schema again: Docs fills in as
//   soon as the key is there, without "Re-fetch". A pasted key applies at once (an operation run
//   right after carries it); typed keys wait for a 300 ms pause.
// * Subscriptions go over graphql-ws (graphql-transport-ws) to the same /graphql URL; browsers
//   cannot set headers on a WebSocket, so the key travels in connection_init's payload
//   ({"Authorization": "Key ..."}), which the server reads (app/live/transport.py).
// * Whether an operation is a subscription is read from the text being sent (operationKinds),
//   not only from GraphiQL's parsed document, which lags an edit by a debounce: a subscription
//   pasted and run at once went over HTTP and got the server's 400.
(function () {
  "use strict";

  var STORAGE_KEY = "labelstream:graphiql:headers";
  var mount = document.getElementById("graphiql");
  var PLACEHOLDER = JSON.stringify(JSON.parse(mount.dataset.headersPlaceholder || "{}"), null, 2);
  var HINT =
    'Paste your API key into the Headers tab below: {"Authorization": "Key <key>"}' +
    " (labelstream up prints one; `labelstream keys create` makes more).";
  var DEFAULT_QUERY =
    "# Labelstream's GraphQL API. Your key goes in the Headers tab below; it is kept in this\n" +
    "# browser. Docs (the book icon) lists every type; run with Ctrl-Enter.\n" +
    "{\n  me {\n    user {\n      email\n    }\n    apps {\n      nodes {\n        id\n        name\n      }\n    }\n  }\n}\n";

  var httpUrl = window.location.origin + window.location.pathname;
  var wsUrl = httpUrl.replace(/^http/, "ws");

  function loadHeaders() {
    try {
      // else the headers the earlier (Strawberry) page had GraphiQL keep
      return window.localStorage.getItem(STORAGE_KEY) || window.localStorage.getItem("graphiql:headers");
    } catch (e) {
      return null;
    }
  }

  function saveHeaders(text) {
    try {
      window.localStorage.setItem(STORAGE_KEY, text);
    } catch (e) {
      /* storage disabled: the key lasts as long as the page */
    }
  }

  // The Authorization value of a headers text, or null when there is none worth sending.
  function authorizationOf(text) {
    var headers;
    try {
      headers = JSON.parse(text || "{}");
    } catch (e) {
      return null;
    }
    if (!headers || typeof headers !== "object") return null;
    for (var name in headers) {
      if (name.toLowerCase() !== "authorization") continue;
      var value = headers[name];
      if (typeof value !== "string") return null;
      value = value.trim();
      if (!/^\S+\s+\S+$/.test(value) || value.indexOf("<") >= 0) return null;
      return value;
    }
    return null;
  }

  function noKeyFetcher() {
    return Promise.resolve({ errors: [{ message: HINT, extensions: { code: "UNAUTHENTICATED" } }] });
  }

  // The operations of a GraphQL document as [{type, name}] (fragments left out): enough to tell
  // a subscription from a query or mutation without a parser (strings, block strings, comments,
  // selection sets and variable definitions are skipped).
  function operationKinds(text) {
    var ops = [];
    var pending = null; // the operation whose definition has started, until its "{"
    var depth = 0; // selection-set braces
    var parens = 0; // variable definitions (their default values may hold braces)
    var i = 0;
    var n = text.length;
    while (i < n) {
      var c = text[i];
      if (c === "#") {
        while (i < n && text[i] !== "\n") i++;
        continue;
      }
      if (c === '"') {
        if (text.substr(i, 3) === '"""') {
          var end = text.indexOf('"""', i + 3);
          i = end < 0 ? n : end + 3;
          continue;
        }
        i++;
        while (i < n && text[i] !== '"' && text[i] !== "\n") i += text[i] === "\\" ? 2 : 1;
        i++;
        continue;
      }
      if (c === "(" && depth === 0) parens++;
      else if (c === ")" && depth === 0) parens = Math.max(0, parens - 1);
      else if (c === "{" && parens === 0) {
        if (depth === 0) {
          ops.push(pending || { type: "query", name: undefined }); // "{ ... }": a query
          pending = null;
        }
        depth++;
      } else if (c === "}" && parens === 0) depth = Math.max(0, depth - 1);
      else if (depth === 0 && parens === 0 && /[A-Za-z_]/.test(c)) {
        var j = i;
        while (j < n && /\w/.test(text[j])) j++;
        var word = text.slice(i, j);
        if (pending && pending.expectName) {
          pending.name = word;
          pending.expectName = false;
        } else if (!pending && /^(query|mutation|subscription|fragment)$/.test(word)) {
          pending = { type: word, name: undefined, expectName: true };
        }
        i = j;
        continue;
      }
      if (pending && pending.expectName && !/[\s,]/.test(c)) pending.expectName = false; // "(", "@"
      i++;
    }
    return ops.filter(function (op) {
      return op.type !== "fragment";
    });
  }

  function isSubscription(query, operationName) {
    var ops = operationKinds(query || "");
    var op = operationName
      ? ops.filter(function (o) {
          return o.name === operationName;
        })[0]
      : ops.length === 1
        ? ops[0]
        : null;
    return !!op && op.type === "subscription";
  }

  // GraphiQL's fetcher picks the WebSocket for a subscription by the document GraphiQL parsed
  // last; when that is not the text being sent (an edit within the parse debounce), give it
  // the operation's kind read from the text itself.
  function withCurrentKind(fetcher) {
    return function (params, opts) {
      var ast = opts && opts.documentAST;
      var current = ast && ast.loc && ast.loc.source && ast.loc.source.body === params.query;
      if (!current && params.operationName !== "IntrospectionQuery") {
        var name = params.operationName || undefined;
        var kind = isSubscription(params.query, name) ? "subscription" : "query";
        var definition = { kind: "OperationDefinition", operation: kind };
        if (name) definition.name = { kind: "Name", value: name };
        opts = Object.assign({}, opts, { documentAST: { kind: "Document", definitions: [definition] } });
      }
      return fetcher(params, opts);
    };
  }

  // One fetcher (and one lazy WebSocket client) per key.
  function makeFetcher(authorization) {
    if (!authorization) return { fetcher: noKeyFetcher, dispose: function () {} };
    var wsClient = window.graphqlWs.createClient({
      url: wsUrl,
      lazy: true,
      connectionParams: { Authorization: authorization },
    });
    var fetcher = withCurrentKind(
      window.GraphiQLToolkit.createGraphiQLFetcher({ url: httpUrl, wsClient: wsClient })
    );
    return {
      fetcher: fetcher,
      dispose: function () {
        wsClient.dispose();
      },
    };
  }

  var React = window.React;
  var explorer = window.GraphiQLPluginExplorer.explorerPlugin();

  function LabelstreamGraphiQL() {
    var initial = React.useMemo(function () {
      return loadHeaders() || PLACEHOLDER;
    }, []);
    var headersState = React.useState(initial);
    var authState = React.useState(function () {
      return authorizationOf(initial);
    });
    var timer = React.useRef(null);
    var current = React.useMemo(
      function () {
        return makeFetcher(authState[0]);
      },
      [authState[0]]
    );
    React.useEffect(
      function () {
        return current.dispose;
      },
      [current]
    );

    function onEditHeaders(text) {
      var pasted = Math.abs(text.length - (headersState[0] || "").length) > 1;
      headersState[1](text);
      if (text !== PLACEHOLDER) saveHeaders(text);
      window.clearTimeout(timer.current);
      if (pasted) {
        // a key pasted (or a block replaced) is whole: use it at once, so an operation run
        // right after already carries it
        authState[1](authorizationOf(text));
        return;
      }
      // typing a key: wait for a pause before asking the server with it
      timer.current = window.setTimeout(function () {
        authState[1](authorizationOf(text));
      }, 300);
    }

    return React.createElement(window.GraphiQL, {
      fetcher: current.fetcher,
      defaultQuery: DEFAULT_QUERY,
      headers: headersState[0],
      defaultHeaders: headersState[0], // a new tab starts with the key, not with nothing
      onEditHeaders: onEditHeaders,
      shouldPersistHeaders: false, // kept under STORAGE_KEY instead, once for every tab
      isHeadersEditorEnabled: true,
      defaultEditorToolsVisibility: "headers",
      inputValueDeprecation: true,
      plugins: [explorer],
    });
  }

  var root = window.ReactDOMClient.createRoot(mount);
  root.render(React.createElement(LabelstreamGraphiQL));
})();
