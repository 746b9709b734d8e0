// Bundles src/vendor.js into app/graphql/static/graphiql/vendor.{js,css} and writes
// THIRD_PARTY_LICENSES: every npm package whose code ends up in the bundle, with its licence text.
import { build } from "esbuild";
import { readFileSync, readdirSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(here, "../../app/graphql/static/graphiql");

const result = await build({
  entryPoints: { vendor: join(here, "src/vendor.js") },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outdir: out,
  define: { "process.env.NODE_ENV": '"production"' },
  legalComments: "none", // the licences are in THIRD_PARTY_LICENSES
  loader: { ".woff": "dataurl", ".woff2": "dataurl", ".ttf": "dataurl", ".svg": "dataurl" },
  metafile: true,
  logLevel: "warning",
});

// the package directory of every bundled input: node_modules/<name> or node_modules/@scope/<name>
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/^(.*node_modules\/((?:@[^/]+\/)?[^/]+))\//);
  if (m) packages.set(m[1], m[2]);
}

const licenceFile = (dir) =>
  readdirSync(dir).find((f) => /^(licen[sc]e|copying)([-._][\w.-]*)?$/i.test(f));
const repoOf = (pkg) =>
  String((typeof pkg.repository === "string" ? pkg.repository : pkg.repository?.url) ?? "")
    .replace(/^git\+/, "")
    .replace(/\.git$/, "");
const authorOf = (pkg) => (typeof pkg.author === "string" ? pkg.author : pkg.author?.name) ?? "";

// The MIT text, for packages that declare MIT in package.json but ship no licence file.
const MIT = `Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.`;

const found = [...packages]
  .sort((a, b) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0]))
  .map(([dir, name]) => {
    const pkgDir = resolve(here, dir);
    const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
    const file = licenceFile(pkgDir);
    return { name, pkg, text: file ? readFileSync(join(pkgDir, file), "utf8").trim() : null };
  });

const sections = found.map(({ name, pkg, text }) => {
  if (text === null) {
    // no licence file in the npm package: the one of a package of the same repository, else
    // the MIT text its package.json declares
    const sibling = found.find((o) => o.text !== null && repoOf(o.pkg) && repoOf(o.pkg) === repoOf(pkg));
    if (sibling) {
      text = `(no licence file in the package; the one of ${sibling.name}, same repository ${repoOf(pkg)})\n\n${sibling.text}`;
    } else if (pkg.license === "MIT") {
      const who = authorOf(pkg) || `the authors of ${name}`;
      const where = repoOf(pkg) ? ` (${repoOf(pkg)})` : "";
      text = `(no licence file in the package; package.json declares MIT)\n\nCopyright (c) ${who}${where}\n\n${MIT}`;
    } else {
      throw new Error(`${name}@${pkg.version}: no licence file and licence ${pkg.license}`);
    }
  }
  const heading = `${name}@${pkg.version} (${pkg.license ?? "see text"})`;
  return `${heading}\n${"-".repeat(heading.length)}\n\n${text}\n`;
});
const header =
  "Third-party software bundled in vendor.js and vendor.css (GraphiQL and its dependencies),\n" +
  "built by tools/graphiql/build.sh from the versions pinned in tools/graphiql/package-lock.json.\n";
writeFileSync(join(out, "THIRD_PARTY_LICENSES"), [header, ...sections].join("\n\n"));
console.log(`${packages.size} packages bundled into ${out}`);
