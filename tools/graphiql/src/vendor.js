// The libraries the GraphiQL page needs, as page globals (the page's own script,
// app/graphql/static/graphiql/labelstream-graphiql.js, is plain JavaScript using them).
import * as React from "react";
import * as ReactDOMClient from "react-dom/client";
import { GraphiQL } from "graphiql";
import { explorerPlugin } from "@graphiql/plugin-explorer";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { createClient } from "graphql-ws";
import "graphiql/graphiql.css";
import "@graphiql/plugin-explorer/dist/style.css";

window.React = React;
window.ReactDOMClient = ReactDOMClient;
window.GraphiQL = GraphiQL;
window.GraphiQLPluginExplorer = { explorerPlugin };
window.GraphiQLToolkit = { createGraphiQLFetcher };
window.graphqlWs = { createClient };
