/**
 * REPL input → JavaScript that Node's own REPL evaluator runs.
 *
 * TypeScript is type-stripped with esbuild (no type checking). Node's
 * evaluator then adds top-level `await`. Three rewrites make a notebook
 * forgiving, all on top-level statements only:
 *
 * - `const` / `let` become `var`, and `class X {}` becomes `var X = class X {}`,
 *   so running a line again redeclares instead of failing with
 *   "Identifier 'x' has already been declared" (browser consoles do the same).
 * - `import {a} from "m"` becomes `var {a} = await import("m")` (static
 *   imports cannot run in a REPL).
 * - Input that looks like an object literal (`{a: 1}`) is an expression, as
 *   in Node's REPL, not a block.
 *
 * Top-level statements are found in esbuild's printed output, which starts
 * each statement on a new line: a line that begins outside any bracket,
 * string, template literal or comment starts one. If that scan does not end
 * cleanly (an odd regex literal, say), the output is left as it is.
 *
 * esbuild is an optional peer dependency (23 MB a library user who never
 * opens the REPL should not get): it is imported when the REPL starts
 * (`loadTransformer`), and a missing one is a message saying how to add it.
 */
import type { Message } from "esbuild";
import { Recoverable } from "node:repl";

type Esbuild = Pick<typeof import("esbuild"), "transformSync">;
let esbuild: Esbuild | undefined;

export const ESBUILD_MISSING = "the REPL turns TypeScript into JavaScript with esbuild, which is not installed: npm install --save-dev esbuild";

/** Import esbuild for `toJavaScript`; throws ESBUILD_MISSING's message when it is not installed. */
export async function loadTransformer(): Promise<void> {
  if (esbuild) return;
  let m: Esbuild & { default?: Esbuild };
  try {
    m = await import("esbuild");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND" && /'esbuild'/.test((e as Error).message)) throw new Error(ESBUILD_MISSING);
    throw e;
  }
  esbuild = typeof m.transformSync === "function" ? m : m.default;
}

/** Raised for input that is not valid TypeScript, with a code frame. */
export class ReplSyntaxError extends SyntaxError {
  override name = "SyntaxError";
}

/**
 * Type-strip and rewrite one REPL entry (after `loadTransformer`). Throws
 * `Recoverable` for input that is incomplete (Node then reads more lines).
 */
export function toJavaScript(code: string): string {
  if (code.trim() === "") return "";
  let js: string | undefined;
  if (/^\s*\{/.test(code) && /\}\s*;?\s*$/.test(code)) {
    try {
      js = strip(`(${code.trim().replace(/;\s*$/, "")})`);
    } catch {
      js = undefined; // a block after all
    }
  }
  if (js === undefined) {
    try {
      js = strip(code);
    } catch (e) {
      throw syntaxError(code, e);
    }
  }
  return rewriteTopLevel(js);
}

function strip(code: string): string {
  if (!esbuild) throw new Error("toJavaScript: call `await loadTransformer()` first (it imports esbuild)");
  return esbuild.transformSync(code, {
    loader: "ts",
    target: "esnext",
    sourcefile: "REPL",
    // Keep value imports even when unused: the rewrite below turns them into dynamic imports.
    tsconfigRaw: { compilerOptions: { verbatimModuleSyntax: true } },
  }).code;
}

function syntaxError(code: string, e: unknown): Error {
  const errors = (e as { errors?: Message[] }).errors;
  const first = errors?.[0];
  if (!first) return e instanceof Error ? e : new Error(String(e));
  const text = first.text;
  const incomplete =
    /end of file/.test(text) ||
    /to terminate multi-line comment/.test(text) ||
    // an unterminated template literal may continue on the next line
    (/Unterminated string literal/.test(text) && (code.match(/(?<!\\)`/g)?.length ?? 0) % 2 === 1);
  let message = text;
  const loc = first.location;
  if (loc) {
    const lineNo = String(loc.line);
    message += `\n\n  ${lineNo} | ${loc.lineText}\n  ${" ".repeat(lineNo.length)} | ${" ".repeat(loc.column)}^`;
  }
  const err = new ReplSyntaxError(message);
  err.stack = `SyntaxError: ${message}`;
  return incomplete ? new Recoverable(err) : err;
}

// --- top-level rewrites --------------------------------------------------------------

/** For each line: does it start at the top level (outside brackets, strings, templates and comments)? */
export function topLevelLines(js: string): boolean[] | null {
  const starts: boolean[] = [true];
  // Stack of template-literal nesting: each entry is the brace depth of the `${` that opened it.
  const templates: number[] = [];
  let depth = 0;
  let inTemplate = false;
  let prev = ""; // last significant code character, to tell a regex from a division
  let i = 0;
  const n = js.length;
  while (i < n) {
    const c = js[i]!;
    if (c === "\n") {
      starts.push(depth === 0 && !inTemplate && templates.length === 0);
      i++;
      continue;
    }
    if (inTemplate) {
      if (c === "\\") i += 2;
      else if (c === "`") {
        inTemplate = false;
        prev = "`";
        i++;
      } else if (c === "$" && js[i + 1] === "{") {
        templates.push(depth);
        depth++;
        inTemplate = false;
        prev = "{";
        i += 2;
      } else i++;
      continue;
    }
    if (c === "/" && js[i + 1] === "/") {
      while (i < n && js[i] !== "\n") i++;
      continue;
    }
    if (c === "/" && js[i + 1] === "*") {
      const end = js.indexOf("*/", i + 2);
      if (end < 0) return null;
      for (let k = i; k < end; k++) if (js[k] === "\n") starts.push(false);
      i = end + 2;
      continue;
    }
    if (c === '"' || c === "'") {
      i++;
      while (i < n && js[i] !== c) {
        if (js[i] === "\\") i++;
        else if (js[i] === "\n") return null;
        i++;
      }
      if (i >= n) return null;
      i++;
      prev = c;
      continue;
    }
    if (c === "/" && (prev === "" || "(,=:[!&|?{};+-*%<>~^".includes(prev))) {
      // a regular expression literal
      i++;
      let inClass = false;
      while (i < n && (inClass || js[i] !== "/")) {
        if (js[i] === "\\") i++;
        else if (js[i] === "[") inClass = true;
        else if (js[i] === "]") inClass = false;
        else if (js[i] === "\n") return null;
        i++;
      }
      if (i >= n) return null;
      i++;
      prev = "/";
      continue;
    }
    if (c === "`") {
      inTemplate = true;
      i++;
      continue;
    }
    if (c === "{" || c === "(" || c === "[") depth++;
    else if (c === "}" || c === ")" || c === "]") {
      depth--;
      if (c === "}" && templates.length > 0 && templates[templates.length - 1] === depth) {
        templates.pop();
        inTemplate = true;
        i++;
        continue;
      }
    }
    if (!/\s/.test(c)) prev = /[\w$]/.test(c) ? "a" : c;
    i++;
  }
  if (inTemplate || templates.length > 0 || depth !== 0) return null;
  return starts;
}

const IDENT = "[A-Za-z_$][\\w$]*";

/** Apply the top-level rewrites to esbuild's output. */
export function rewriteTopLevel(js: string): string {
  const starts = topLevelLines(js);
  if (!starts) return js;
  const lines = js.split("\n");
  // Group lines into top-level statements.
  const statements: string[][] = [];
  lines.forEach((line, k) => {
    if (starts[k] && line !== "" && !/^[\]})]/.test(line)) statements.push([line]);
    else if (statements.length > 0) statements[statements.length - 1]!.push(line);
    else statements.push([line]);
  });
  return statements.map((s) => rewriteStatement(s.join("\n"))).join("\n");
}

function rewriteStatement(s: string): string {
  let m: RegExpExecArray | null;
  if ((m = /^(const|let)(\s)/.exec(s))) return `var${m[2]}${s.slice(m[0].length)}`;
  if ((m = new RegExp(`^class\\s+(${IDENT})`).exec(s))) {
    const body = s.replace(/\s+$/, "");
    return `var ${m[1]} = ${body};${s.slice(body.length)}`;
  }
  if (/^import[\s{*"']/.test(s)) return rewriteImport(s) ?? s;
  return s;
}

/** `import ... from "m";` → `var ... = await import("m");` (null: a form we leave to Node's error). */
export function rewriteImport(s: string): string | null {
  const trailing = s.slice(s.replace(/\s+$/, "").length);
  const stmt = s.trim().replace(/;$/, "");
  let m: RegExpExecArray | null;
  if ((m = /^import\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')$/.exec(stmt))) return `await import(${m[1]});${trailing}`;
  m = /^import\s+([\s\S]+?)\s+from\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')$/.exec(stmt);
  if (!m) return null;
  const clause = m[1]!.trim();
  const spec = m[2]!;
  let def: string | undefined;
  let rest = clause;
  const d = new RegExp(`^(${IDENT})\\s*(?:,\\s*|$)`).exec(clause);
  if (d && d[1] !== "type") {
    def = d[1];
    rest = clause.slice(d[0].length).trim();
  }
  const ns = new RegExp(`^\\*\\s*as\\s+(${IDENT})$`).exec(rest);
  if (ns) return `var ${ns[1]} = await import(${spec})${def ? `, ${def} = ${ns[1]}.default` : ""};${trailing}`;
  const names: string[] = def ? [`default: ${def}`] : [];
  if (rest !== "") {
    const braces = /^\{([\s\S]*)\}$/.exec(rest);
    if (!braces) return null;
    for (const part of braces[1]!.split(",").map((p) => p.trim()).filter(Boolean)) {
      const as = new RegExp(`^(${IDENT}|"[^"]*"|'[^']*')\\s+as\\s+(${IDENT})$`).exec(part);
      if (as) names.push(`${as[1]}: ${as[2]}`);
      else if (new RegExp(`^${IDENT}$`).test(part)) names.push(part);
      else return null;
    }
  }
  return `var { ${names.join(", ")} } = await import(${spec});${trailing}`;
}
