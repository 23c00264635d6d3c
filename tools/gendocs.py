#!/usr/bin/env python3
"""Registry-format docs from the provider's own schema, and module README tables.

    tools/gendocs.py --schema schema.json --docs-out docs      # provider docs
    tools/gendocs.py --terraform .tools/bin/terraform --plugin-dir target/debug \
        --docs-out docs                                         # schema read from the built provider
    tools/gendocs.py --modules-out modules                      # module README tables

`make docs` runs both in place; `acceptance/tests/docs.rs` runs them into a
temporary directory and fails when the committed files differ.

Provider docs (the layout of terraform-plugin-docs):
  docs/index.md                              provider: examples/provider/provider.tf
  docs/resources/<name>.md                   examples/resources/<type>/resource.tf, import.sh, import-by-id.tf
  docs/data-sources/<name>.md                examples/data-sources/<type>/data-source.tf
  docs/ephemeral-resources/<name>.md         examples/ephemeral-resources/<type>/ephemeral-resource.tf
<name> is the type without the `fleet_` prefix. What the schema cannot say
lives in docs-src/<kind>/<name>.md (docs-src/index.md for the provider),
split into parts by marker lines:
  <!-- intro -->       prose after the description, before the example
  <!-- sections -->    whole `## ...` sections between the example and the schema
  <!-- attributes -->  bullets "- `attr`: text" (`block.attr` for nested ones)
                       appended to that attribute's description
  <!-- schema -->      prose after the schema lists (before nested schemas)
  <!-- import -->      prose after the import examples
Anything naming an attribute that does not exist is an error, so notes
cannot silently go stale. Other files under docs/ (guides/, CONTRACT.md)
are hand-written and left alone.

Module READMEs: the tables between
  <!-- BEGIN_INPUTS --> ... <!-- END_INPUTS -->   from variables.tf
  <!-- BEGIN_OUTPUTS --> ... <!-- END_OUTPUTS --> from outputs.tf
are regenerated; the rest of the README is kept as written.

Python 3 standard library only.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

PROVIDER = "fleet"
PROVIDER_ADDR_SUFFIX = "/fleetform/fleet"

KINDS = [
    # schema key, docs dir, title word, example dir, example file
    ("resource_schemas", "resources", "Resource", "resources", "resource.tf"),
    ("data_source_schemas", "data-sources", "Data Source", "data-sources", "data-source.tf"),
    (
        "ephemeral_resource_schemas",
        "ephemeral-resources",
        "Ephemeral Resource",
        "ephemeral-resources",
        "ephemeral-resource.tf",
    ),
]
GENERATED_DIRS = [k[1] for k in KINDS]
PARTS = ("intro", "sections", "attributes", "schema", "import")
WRITE_ONLY_LINK = (
    "[Write-only](https://developer.hashicorp.com/terraform/language/resources/ephemeral#write-only-arguments)"
)


class DocError(Exception):
    pass


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_opt(path):
    return read(path) if os.path.exists(path) else None


# ---------------------------------------------------------------- docs-src


def load_src(path):
    """Parts of a docs-src file: {part: text, "attributes": {name: note}}."""
    parts = {}
    text = read_opt(path)
    if text is None:
        return parts
    current = None
    buf = {}
    for line in text.splitlines():
        m = re.fullmatch(r"<!--\s*([a-z]+)\s*-->", line.strip())
        if m:
            current = m.group(1)
            if current not in PARTS:
                raise DocError(f"{path}: unknown part <!-- {current} --> (known: {', '.join(PARTS)})")
            if current in buf:
                raise DocError(f"{path}: part <!-- {current} --> appears twice")
            buf[current] = []
            continue
        if current is None:
            if line.strip():
                raise DocError(f"{path}: text before the first <!-- part --> marker: {line!r}")
            continue
        buf[current].append(line)
    for k, lines in buf.items():
        parts[k] = "\n".join(lines).strip("\n")
    notes = {}
    if "attributes" in parts:
        key = None
        for line in parts["attributes"].splitlines():
            m = re.match(r"^- `([A-Za-z0-9_.]+)`:\s*(.*)$", line)
            if m:
                key = m.group(1)
                if key in notes:
                    raise DocError(f"{path}: attribute note for `{key}` appears twice")
                notes[key] = m.group(2).strip()
            elif line.strip() and key is not None and line.startswith("  "):
                notes[key] += " " + line.strip()
            elif line.strip():
                raise DocError(f"{path}: not an attribute note (\"- `name`: text\"): {line!r}")
        parts["attributes"] = notes
    return parts


# ---------------------------------------------------------------- schema → markdown


def type_name(t):
    """terraform-plugin-docs' spelling of a cty type."""
    if isinstance(t, str):
        return {"string": "String", "number": "Number", "bool": "Boolean", "dynamic": "Dynamic"}[t]
    kind, inner = t[0], t[1]
    if kind in ("list", "set", "map"):
        return f"{kind.capitalize()} of {type_name(inner)}"
    if kind == "object":
        return "Object"
    if kind == "tuple":
        return "Tuple"
    raise DocError(f"unknown type {t!r}")


def anchor(prefix, path):
    return f"{prefix}--{'--'.join(path)}"


def clean(desc):
    return " ".join((desc or "").split())


class Page:
    """Renders a block's schema: sections, then nested schemas in order."""

    def __init__(self, notes, where):
        self.notes = dict(notes or {})
        self.used = set()
        self.nested = []  # (anchor, title path, render callable)
        self.where = where

    def note(self, path):
        key = ".".join(path)
        if key in self.notes:
            self.used.add(key)
            return self.notes[key]
        return ""

    def describe(self, path, desc):
        text = clean(desc)
        extra = self.note(path)
        if extra:
            text = f"{text} {extra}" if text else extra
        return text

    def check_notes(self):
        unknown = sorted(set(self.notes) - self.used)
        if unknown:
            raise DocError(
                f"{self.where}: notes for attributes the schema does not have: {', '.join(unknown)}"
            )

    def attr_line(self, path, a):
        flags = []
        if "nested_type" in a:
            nt = a["nested_type"]
            mode = nt.get("nesting_mode", "single")
            label = {"single": "Attributes", "list": "Attributes List", "set": "Attributes Set", "map": "Attributes Map"}[mode]
            flags.append(label)
        else:
            flags.append(type_name(a["type"]))
        if a.get("sensitive"):
            flags.append("Sensitive")
        if a.get("write_only"):
            flags.append(WRITE_ONLY_LINK)
        if a.get("deprecated"):
            flags.append("Deprecated")
        text = self.describe(path, a.get("description"))
        line = f"- `{path[-1]}` ({', '.join(flags)})"
        if text:
            line += " " + text
        if "nested_type" in a:
            anc = anchor("nestedatt", path)
            line += f" (see [below for nested schema](#{anc}))"
            self.nested.append((anc, path, lambda p=path, b=a["nested_type"]: self.block_lists(p, b, nested=True)))
        elif isinstance(a["type"], list) and a["type"][0] == "object" or (
            isinstance(a["type"], list)
            and a["type"][0] in ("list", "set", "map")
            and isinstance(a["type"][1], list)
            and a["type"][1][0] == "object"
        ):
            obj = a["type"] if a["type"][0] == "object" else a["type"][1]
            anc = anchor("nestedatt", path)
            line += f" (see [below for nested schema](#{anc}))"
            self.nested.append((anc, path, lambda p=path, o=obj: self.object_lists(p, o)))
        return line

    def block_line(self, path, nb):
        mode = nb.get("nesting_mode", "single")
        label = {
            "single": "Block",
            "group": "Block",
            "list": "Block List",
            "set": "Block Set",
            "map": "Block Map",
        }[mode]
        limits = []
        if nb.get("min_items"):
            limits.append(f"Min: {nb['min_items']}")
        if nb.get("max_items") and mode not in ("single", "group"):
            limits.append(f"Max: {nb['max_items']}")
        flags = ", ".join([label] + limits)
        text = self.describe(path, nb["block"].get("description"))
        anc = anchor("nestedblock", path)
        line = f"- `{path[-1]}` ({flags})"
        if text:
            line += " " + text
        line += f" (see [below for nested schema](#{anc}))"
        self.nested.append((anc, path, lambda p=path, b=nb["block"]: self.block_lists(p, b, nested=True)))
        return line

    def block_lists(self, path, block, nested=False):
        groups = {"Required": [], "Optional": [], "Read-Only": []}
        nested_of = {k: [] for k in groups}  # nested schemas, in page order
        for name in sorted(block.get("attributes", {})):
            a = block["attributes"][name]
            group = "Required" if a.get("required") else "Optional" if a.get("optional") else "Read-Only"
            mark = len(self.nested)
            groups[group].append(self.attr_line(path + [name], a))
            nested_of[group] += self.nested[mark:]
            del self.nested[mark:]
        for name in sorted(block.get("block_types", {})):
            nb = block["block_types"][name]
            group = "Required" if nb.get("min_items") else "Optional"
            mark = len(self.nested)
            groups[group].append(self.block_line(path + [name], nb))
            nested_of[group] += self.nested[mark:]
            del self.nested[mark:]
        out = []
        for title, lines in groups.items():
            self.nested += nested_of[title]
            if not lines:
                continue
            out.append(f"{title}:" if nested else f"### {title}")
            out.append("")
            out.extend(lines)
            out.append("")
        return out

    def object_lists(self, path, obj):
        out = ["Read-Only:", ""]
        for name in sorted(obj[1]):
            text = self.note(path + [name])
            line = f"- `{name}` ({type_name(obj[1][name])})"
            out.append(line + (" " + text if text else ""))
        out.append("")
        return out

    def render_nested(self):
        out = []
        i = 0
        while i < len(self.nested):  # nested schemas may add more
            anc, path, render = self.nested[i]
            body = render()
            out.append(f'<a id="{anc}"></a>')
            out.append(f"### Nested Schema for `{'.'.join(path)}`")
            out.append("")
            out.extend(body)
            i += 1
        return out


def front_matter(title, description):
    desc = clean(description)
    lines = ["---", f'page_title: "{title}"', 'subcategory: ""', "description: |-"]
    lines.append(f"  {desc}" if desc else "  ")
    lines.append("---")
    return lines


def code(lang, text):
    return [f"```{lang}", text.rstrip("\n"), "```"]


def render_page(*, title, heading, schema_block, example, parts, where, import_sh=None, import_tf=None):
    desc = schema_block.get("description", "")
    out = front_matter(title, desc)
    out += ["", f"# {heading}", ""]
    if clean(desc):
        out += [clean(desc), ""]
    if parts.get("intro"):
        out += [parts["intro"], ""]
    if example is not None:
        out += ["## Example Usage", ""] + code("terraform", example) + [""]
    if parts.get("sections"):
        out += [parts["sections"], ""]
    page = Page(parts.get("attributes"), where)
    out += ["## Schema", ""]
    out += page.block_lists([], schema_block)
    if parts.get("schema"):
        out += [parts["schema"], ""]
    out += page.render_nested()
    page.check_notes()
    if import_sh is not None or import_tf is not None or parts.get("import"):
        out += ["## Import", ""]
        if import_sh is not None:
            out += ["Import is supported using the following syntax:", ""]
            out += code("shell", import_sh) + [""]
        if import_tf is not None:
            out += ["Or, with an `import` block (Terraform 1.5 and later):", ""]
            out += code("terraform", import_tf) + [""]
        if parts.get("import"):
            out += [parts["import"], ""]
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def strip_shebang(text):
    if text is None:
        return None
    lines = text.splitlines()
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    return "\n".join(lines).strip("\n") + "\n"


def provider_schemas(schema):
    for addr, s in schema.get("provider_schemas", {}).items():
        if addr.endswith(PROVIDER_ADDR_SUFFIX):
            return s
    raise DocError(f"no provider ending in {PROVIDER_ADDR_SUFFIX} in the schema")


def generate_docs(schema, root):
    """{relative path under docs/: text}."""
    ps = provider_schemas(schema)
    src = os.path.join(root, "docs-src")
    ex = os.path.join(root, "examples")
    files = {}
    known = set()

    p = ps["provider"]["block"]
    files["index.md"] = render_page(
        title="Provider: Fleet",
        heading="Fleet Provider",
        schema_block=p,
        example=read_opt(os.path.join(ex, "provider", "provider.tf")),
        parts=load_src(os.path.join(src, "index.md")),
        where="docs-src/index.md",
    )
    known.add(os.path.join(src, "index.md"))

    for key, docdir, word, exdir, exfile in KINDS:
        for type_ in sorted(ps.get(key, {})):
            name = type_[len(PROVIDER) + 1 :] if type_.startswith(PROVIDER + "_") else type_
            tdir = os.path.join(ex, exdir, type_)
            src_path = os.path.join(src, docdir, f"{name}.md")
            known.add(src_path)
            example = read_opt(os.path.join(tdir, exfile))
            if example is None:
                raise DocError(f"examples/{exdir}/{type_}/{exfile} is missing: every type needs an example")
            kw = {}
            if key == "resource_schemas":
                kw["import_sh"] = strip_shebang(read_opt(os.path.join(tdir, "import.sh")))
                kw["import_tf"] = read_opt(os.path.join(tdir, "import-by-id.tf"))
            files[f"{docdir}/{name}.md"] = render_page(
                title=f"{type_} {word} - {PROVIDER}",
                heading=f"{type_} ({word})",
                schema_block=ps[key][type_]["block"],
                example=example,
                parts=load_src(src_path),
                where=os.path.relpath(src_path, root),
                **kw,
            )
    # Examples or docs-src files for a type that no longer exists are mistakes.
    for key, docdir, word, exdir, exfile in KINDS:
        d = os.path.join(ex, exdir)
        if os.path.isdir(d):
            for n in sorted(os.listdir(d)):
                if n not in ps.get(key, {}):
                    raise DocError(f"examples/{exdir}/{n} is not a {word.lower()} of the provider")
    if os.path.isdir(src):
        for dirpath, _, names in os.walk(src):
            for n in names:
                path = os.path.join(dirpath, n)
                if n.endswith(".md") and path not in known:
                    raise DocError(f"{os.path.relpath(path, root)} documents no type of the provider")
    return files


def write_docs(files, out):
    for d in GENERATED_DIRS:
        full = os.path.join(out, d)
        if os.path.isdir(full):
            for n in os.listdir(full):
                if n.endswith(".md") and f"{d}/{n}" not in files:
                    os.remove(os.path.join(full, n))
                    print(f"gendocs: removed {os.path.join(full, n)}", file=sys.stderr)
    for rel, text in files.items():
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if read_opt(path) != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"gendocs: wrote {path}", file=sys.stderr)


# ---------------------------------------------------------------- module README tables


def hcl_blocks(text, kind):
    """[(label, body)] of top-level `kind "label" { ... }` blocks."""
    out = []
    i = 0
    n = len(text)
    pat = re.compile(r'^%s\s+"([^"]+)"\s*\{' % re.escape(kind), re.M)
    while True:
        m = pat.search(text, i)
        if not m:
            return out
        start = m.end()
        end = match_brace(text, start)
        out.append((m.group(1), text[start:end]))
        i = end + 1
        if i >= n:
            return out


def match_brace(text, i, depth=1):
    """Index of the brace closing the one before text[i] (strings, heredocs, comments skipped)."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = skip_string(text, i)
            continue
        if c == "#" or text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                return n
            continue
        if text.startswith("/*", i):
            i = text.find("*/", i) + 2
            continue
        if text.startswith("<<", i):
            m = re.match(r"<<-?([A-Za-z_][A-Za-z0-9_]*)\n", text[i:])
            if m:
                tag = m.group(1)
                e = re.compile(r"^\s*%s\s*$" % tag, re.M).search(text, i + m.end())
                i = e.end() if e else n
                continue
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise DocError("unbalanced braces")


def skip_string(text, i):
    """Index after the string literal starting at text[i] == '"'."""
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        if text.startswith("${", i) or text.startswith("%{", i):
            if i > 0 and text[i - 1] == text[i]:  # $${ or %%{ escape
                i += 2
                continue
            i = match_brace(text, i + 2) + 1
            continue
        i += 1
    raise DocError("unterminated string")


def top_level_attrs(body):
    """{name: raw expression} of the attributes directly in a block body."""
    attrs = {}
    i = 0
    n = len(body)
    while i < n:
        m = re.compile(r"[ \t]*([A-Za-z_][A-Za-z0-9_-]*)[ \t]*(=|\{|\")").match(body, i)
        if not m:
            j = body.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if m.group(2) == "=":
            start = m.end()
            j = start
            depth = 0
            while j < n:
                c = body[j]
                if c == '"':
                    j = skip_string(body, j)
                    continue
                if c in "{[(":
                    j = match_brace(body, j + 1) + 1
                    continue
                if c == "\n":
                    break
                j += 1
            attrs[m.group(1)] = body[start:j].strip()
            i = j + 1
        else:  # a nested block: skip it
            k = body.find("{", m.start())
            i = match_brace(body, k + 1) + 1
    return attrs


def hcl_string(expr):
    if not expr.startswith('"'):
        raise DocError(f"description is not a string literal: {expr}")
    s = expr[1:-1]
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            nxt = s[i + 1]
            out.append({"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}.get(nxt, nxt))
            i += 2
            continue
        if s.startswith("$${", i) or s.startswith("%%{", i):
            out.append(s[i + 1 : i + 3])
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def short_type(expr):
    expr = " ".join(expr.split())
    if "{" not in expr and len(expr) <= 40:
        return expr
    m = re.match(r"([a-z]+)\(", expr)
    return f"{m.group(1)}(...)" if m else expr


def cell(text):
    return " ".join(text.split()).replace("|", "\\|")


def module_tables(mdir):
    inputs = ["| name | description | type | required |", "|---|---|---|---|"]
    for name, body in hcl_blocks(read(os.path.join(mdir, "variables.tf")), "variable"):
        a = top_level_attrs(body)
        desc = hcl_string(a["description"]) if "description" in a else ""
        typ = short_type(a.get("type", "any"))
        req = "no" if "default" in a else "yes"
        inputs.append(f"| `{name}` | {cell(desc)} | `{typ}` | {req} |")
    outputs = ["| name | description |", "|---|---|"]
    for name, body in hcl_blocks(read(os.path.join(mdir, "outputs.tf")), "output"):
        a = top_level_attrs(body)
        desc = hcl_string(a["description"]) if "description" in a else ""
        outputs.append(f"| `{name}` | {cell(desc)} |")
    return "\n".join(inputs), "\n".join(outputs)


def replace_between(text, begin, end, body, where):
    b = text.find(begin)
    e = text.find(end)
    if b < 0 or e < b:
        raise DocError(f"{where}: missing {begin} ... {end} markers")
    return text[: b + len(begin)] + "\n" + body + "\n" + text[e:]


def generate_modules(root):
    """{module name: README text}."""
    files = {}
    mroot = os.path.join(root, "modules")
    for m in sorted(os.listdir(mroot)):
        mdir = os.path.join(mroot, m)
        readme = os.path.join(mdir, "README.md")
        if not os.path.isfile(os.path.join(mdir, "variables.tf")) or not os.path.isfile(readme):
            continue
        inputs, outputs = module_tables(mdir)
        text = read(readme)
        where = f"modules/{m}/README.md"
        text = replace_between(text, "<!-- BEGIN_INPUTS -->", "<!-- END_INPUTS -->", inputs, where)
        text = replace_between(text, "<!-- BEGIN_OUTPUTS -->", "<!-- END_OUTPUTS -->", outputs, where)
        files[m] = text
    return files


def schema_from_provider(terraform, plugin_dir):
    """`terraform providers schema -json` of the provider binary in plugin_dir.

    With dev_overrides for fleetform/fleet no `terraform init` is needed.
    """
    with tempfile.TemporaryDirectory(prefix="gendocs-") as d:
        rc = os.path.join(d, "terraformrc")
        with open(rc, "w", encoding="utf-8") as f:
            f.write(
                "provider_installation {\n  dev_overrides {\n"
                f"    \"fleetform/fleet\" = {json.dumps(os.path.abspath(plugin_dir))}\n"
                "  }\n  direct {}\n}\n"
            )
        with open(os.path.join(d, "main.tf"), "w", encoding="utf-8") as f:
            f.write('terraform {\n  required_providers {\n    fleet = { source = "fleetform/fleet" }\n  }\n}\n')
        env = dict(os.environ, TF_CLI_CONFIG_FILE=rc, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1")
        env.pop("TF_LOG", None)
        p = subprocess.run(
            [os.path.abspath(terraform) if os.sep in terraform else terraform, "providers", "schema", "-json"], cwd=d, env=env, capture_output=True, text=True
        )
        if p.returncode != 0:
            raise DocError(f"terraform providers schema -json failed:\n{p.stdout}{p.stderr}")
        return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--schema", help="`terraform providers schema -json` output")
    ap.add_argument("--terraform", help="read the schema with this Terraform CLI instead (with --plugin-dir)")
    ap.add_argument("--plugin-dir", help="directory holding terraform-provider-fleet (e.g. target/debug)")
    ap.add_argument("--docs-out", help="write provider docs here (e.g. docs)")
    ap.add_argument("--modules-out", help="write module READMEs here as <module>/README.md (e.g. modules)")
    args = ap.parse_args()
    if not args.docs_out and not args.modules_out:
        ap.error("nothing to do: give --docs-out and/or --modules-out")
    try:
        if args.docs_out:
            if args.schema:
                with open(args.schema, encoding="utf-8") as f:
                    schema = json.load(f)
            elif args.terraform and args.plugin_dir:
                schema = schema_from_provider(args.terraform, args.plugin_dir)
            else:
                ap.error("--docs-out needs --schema, or --terraform and --plugin-dir")
            write_docs(generate_docs(schema, args.root), args.docs_out)
        if args.modules_out:
            for m, text in generate_modules(args.root).items():
                path = os.path.join(args.modules_out, m, "README.md")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if read_opt(path) != text:
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(text)
                    print(f"gendocs: wrote {path}", file=sys.stderr)
    except DocError as e:
        print(f"gendocs: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
