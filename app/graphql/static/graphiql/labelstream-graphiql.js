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

  // One fetcher (and one lazy WebSocket client) per key.
  function makeFetcher(authorization) {
    if (!authorization) return { fetcher: noKeyFetcher, dispose: function () {} };
    var wsClient = window.graphqlWs.createClient({
      url: wsUrl,
      lazy: true,
      connectionParams: { Authorization: authorization },
    });
    var fetcher = window.GraphiQLToolkit.createGraphiQLFetcher({ url: httpUrl, wsClient: wsClient });
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
