//! The house rules ARCHITECTURE.md states, checked from the sources:
//!
//! - no import circles: no file imports, directly or through others, a file that imports it;
//! - folders keep to their floors: a folder uses only folders on lower floors;
//! - no function over 80 lines outside tests, unless a comment says why it is one piece.
//!
//! "A imports B" means a `use` line (re-exports included) or an inline path in A
//! (`crate::..`, `super::..`, `self::..`, a child module's name) names an item defined in
//! B: paths are followed through `pub use` re-exports to the file that defines the item,
//! so a folder's `mod.rs` that only declares and re-exports is not a party to circles.
//! `mod x;` declarations and `#[cfg(test)]` code do not count. The scan is lexical (no
//! macro expansion); it reads comments and strings out first so they cannot fake an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The floors of ARCHITECTURE.md, lowest first. A folder may use folders on lower floors
/// only; folders on one floor do not use each other.
const FLOORS: &[&[&str]] = &[
    &["atomic_file"],
    &["gpu", "data"],
    &["ops"],
    &["graph"],
    &["model", "reference"],
    &["weights"],
    &["train", "predict", "quant"],
    &["bench"],
];

/// Past this many lines a function must say, in a comment, why it is one piece.
const MAX_FUNCTION_LINES: usize = 80;

type ModPath = Vec<String>;

/// One source file of a crate: its module path and its text with comments, strings and
/// test code blanked out (line structure kept, so line numbers stay true).
struct SourceFile {
    path: PathBuf,
    module: ModPath,
    code: String,
}

struct Crate {
    files: Vec<SourceFile>,
    by_module: BTreeMap<ModPath, usize>,
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of `file` in the crate whose root file sits in `root_dir`.
fn module_of(root_dir: &Path, file: &Path) -> ModPath {
    let relative = file
        .strip_prefix(root_dir)
        .expect("file under its crate root");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    match last.as_str() {
        "lib.rs" | "main.rs" | "mod.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    parts
}

/// The crate whose root file sits in `root_dir`, less the files under `skip` (other crates).
fn load_crate(root_dir: &Path, skip: &[PathBuf]) -> Crate {
    let mut paths = Vec::new();
    rust_files(root_dir, &mut paths);
    paths.retain(|p| !skip.iter().any(|s| p.starts_with(s)));
    paths.sort();
    let mut files = Vec::new();
    let mut by_module = BTreeMap::new();
    for path in paths {
        let text = fs::read_to_string(&path).expect("readable source");
        let module = module_of(root_dir, &path);
        by_module.insert(module.clone(), files.len());
        files.push(SourceFile {
            path,
            module,
            code: without_test_code(&blank_comments_and_strings(&text)),
        });
    }
    Crate { files, by_module }
}

/// Replaces comments, string and character literals by spaces, keeping newlines.
fn blank_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_is_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r'))) && !prev_is_ident {
            // A raw string r#".."# (or br".."), else an identifier starting with r.
            let start = i + if c == 'b' { 2 } else { 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            if chars.get(start + hashes) == Some(&'"') {
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                i = start + hashes + 1;
                while i < chars.len() && !chars[i..].starts_with(&close) {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                i += close.len();
            } else {
                out.push(c);
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                blank(&mut out, chars[i]);
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' && !prev_is_ident {
            // 'x', '\n', '\u{..}' are characters; 'a without a closing quote is a lifetime.
            let close = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&q| q == '\'')
                    .map(|p| p + i + 2)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => i = end + 1,
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Blanks every item marked `#[cfg(test)]`: up to its `;` or its matching `}`.
fn without_test_code(code: &str) -> String {
    let mut out: Vec<char> = code.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= out.len() {
        if out[i..].starts_with(&marker) {
            let mut j = i + marker.len();
            let mut depth = 0usize;
            while j < out.len() {
                match out[j] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ';' if depth == 0 => break,
                    _ => {}
                }
                j += 1;
            }
            let last = j.min(out.len() - 1);
            for c in &mut out[i..=last] {
                if *c != '\n' {
                    *c = ' ';
                }
            }
            i = j;
        }
        i += 1;
    }
    out.into_iter().collect()
}

/// A `use` declaration: its line, whether it re-exports (`pub use`), and each path it
/// brings in with the name it is known by (the alias where there is one).
struct UseItem {
    /// Byte offset of the `use`.
    at: usize,
    reexport: bool,
    paths: Vec<(Vec<String>, String)>,
}

fn line_of(code: &str, byte: usize) -> usize {
    code[..byte].matches('\n').count() + 1
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every `use ...;` in the code, use trees expanded into plain paths.
fn use_items(code: &str) -> Vec<UseItem> {
    let mut items = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("use ") {
        let at = from + found;
        from = at + 4;
        let before = code[..at].trim_end();
        let visibility = before.ends_with("pub")
            || before.ends_with(')') && before[before.len().saturating_sub(16)..].contains("pub(");
        let starts_item = visibility || before.is_empty() || before.ends_with([';', '{', '}', ']']);
        if !starts_item || code[..at].ends_with(is_ident_char) {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            break;
        };
        // Aliases become `@alias` so that whitespace can go.
        let tree: String = code[at + 4..at + end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace(" as ", "@")
            .replace(' ', "");
        items.push(UseItem {
            at,
            reexport: visibility,
            paths: expand_use_tree(&tree),
        });
    }
    items
}

/// `a::{b, c::{d, e as f}}` -> [a,b], [a,c,d], [a,c,e] (known as b, d, f). `self` inside
/// braces names the prefix itself.
fn expand_use_tree(tree: &str) -> Vec<(Vec<String>, String)> {
    let mut paths = Vec::new();
    for part in split_top_level(tree) {
        if let Some(open) = part.find('{') {
            let prefix: Vec<String> = segments(part[..open].trim_end_matches("::"));
            let inner = &part[open + 1..part.len() - 1];
            for (rest, name) in expand_use_tree(inner) {
                let (rest, name) = if rest == ["self"] {
                    (Vec::new(), prefix.last().cloned().unwrap_or(name))
                } else {
                    (rest, name)
                };
                paths.push((prefix.iter().cloned().chain(rest).collect(), name));
            }
        } else if !part.is_empty() {
            let (path, alias) = part.split_once('@').unwrap_or((part, ""));
            let path = segments(path);
            let name = if alias.is_empty() {
                path.last().cloned().unwrap_or_default()
            } else {
                alias.to_string()
            };
            paths.push((path, name));
        }
    }
    paths
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn split_top_level(tree: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tree[start..]);
    parts
}

/// Paths written inline in the code, with their byte offsets: `crate::a::b`, `super::x`, `self::y`, and paths that
/// start with one of `children` (modules declared in this file).
fn inline_paths(code: &str, children: &BTreeSet<String>) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let chars: Vec<(usize, char)> = code.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (byte, c) = chars[i];
        let prev = i.checked_sub(1).map(|p| chars[p].1);
        let starts_path = is_ident_char(c) && !prev.is_some_and(|p| is_ident_char(p) || p == ':');
        if !starts_path {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < chars.len() && (is_ident_char(chars[end].1) || chars[end].1 == ':') {
            end += 1;
        }
        let end_byte = chars.get(end).map_or(code.len(), |&(b, _)| b);
        let text = &code[byte..end_byte];
        let path = segments(text);
        let head = path.first().map(String::as_str).unwrap_or("");
        // `crate::a::{..}` is a use tree, read by `use_items`.
        if text.contains("::")
            && !text.ends_with(':')
            && (matches!(head, "crate" | "super" | "self") || children.contains(head))
        {
            found.push((byte, path));
        }
        i = end;
    }
    found
}

fn child_modules(code: &str) -> BTreeSet<String> {
    let mut children = BTreeSet::new();
    for line in code.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(at) = words.iter().position(|w| *w == "mod") {
            if let Some(name) = words.get(at + 1).and_then(|w| w.strip_suffix(';')) {
                children.insert(name.to_string());
            }
        }
    }
    children
}

/// A module written inline (`mod name { .. }`) and the bytes its braces span.
struct InlineModule {
    name: String,
    span: std::ops::Range<usize>,
}

fn inline_modules(code: &str) -> Vec<InlineModule> {
    let mut modules = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("mod ") {
        let at = from + found;
        from = at + 4;
        if code[..at].ends_with(is_ident_char) {
            continue;
        }
        let rest = code[at + 4..].trim_start();
        let name: String = rest.chars().take_while(|&c| is_ident_char(c)).collect();
        let after = rest[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = code.len() - after.len();
        let mut depth = 0;
        for (offset, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                modules.push(InlineModule {
                    name,
                    span: open..open + offset + 1,
                });
                break;
            }
        }
    }
    modules
}

/// The module a byte of a file belongs to: the file's, then the inline modules around it.
fn module_at(file_module: &[String], inline: &[InlineModule], at: usize) -> ModPath {
    let mut around: Vec<&InlineModule> = inline.iter().filter(|m| m.span.contains(&at)).collect();
    around.sort_by_key(|m| m.span.start);
    file_module
        .iter()
        .cloned()
        .chain(around.into_iter().map(|m| m.name.clone()))
        .collect()
}

impl Crate {
    /// `path` as written in `module`, made absolute (crate-relative); None for paths into
    /// other crates and the standard library.
    fn absolute(&self, module: &[String], path: &[String]) -> Option<ModPath> {
        let (head, rest) = path.split_first()?;
        match head.as_str() {
            "crate" => Some(rest.to_vec()),
            "self" => Some(module.iter().chain(rest).cloned().collect()),
            "super" => {
                let mut base = module.to_vec();
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                Some(base.into_iter().chain(rest.iter().cloned()).collect())
            }
            _ => {
                let child: ModPath = module.iter().chain([head]).cloned().collect();
                self.by_module
                    .contains_key(&child)
                    .then(|| module.iter().chain(path).cloned().collect())
            }
        }
    }

    /// The file that defines the item `path` names, following `pub use` re-exports.
    fn defining_file(&self, path: &[String], hops: usize) -> Option<usize> {
        let module_len = (0..=path.len())
            .rev()
            .find(|&n| self.by_module.contains_key(&path[..n]))?;
        let file = self.by_module[&path[..module_len]];
        let Some(item) = path.get(module_len) else {
            return Some(file);
        };
        if hops < 8 {
            let source = &self.files[file];
            // Any `use` of a module is visible to its descendants, not only `pub use`.
            let inline = inline_modules(&source.code);
            let in_file_scope = |u: &UseItem| !inline.iter().any(|m| m.span.contains(&u.at));
            for reexport in use_items(&source.code).into_iter().filter(in_file_scope) {
                for (target, name) in &reexport.paths {
                    if name == item {
                        if let Some(absolute) = self.absolute(&source.module, target) {
                            let followed: ModPath = absolute
                                .into_iter()
                                .chain(path[module_len + 1..].iter().cloned())
                                .collect();
                            return self.defining_file(&followed, hops + 1);
                        }
                    }
                }
            }
        }
        Some(file)
    }

    /// For each file, the files it imports, each with the first line that does.
    fn imports(&self) -> Vec<BTreeMap<usize, usize>> {
        self.files
            .iter()
            .enumerate()
            .map(|(index, file)| {
                let children = child_modules(&file.code);
                let inline = inline_modules(&file.code);
                let written = use_items(&file.code)
                    .into_iter()
                    .flat_map(|u| u.paths.into_iter().map(move |(p, _)| (u.at, p)))
                    .chain(inline_paths(&file.code, &children));
                let mut edges = BTreeMap::new();
                for (at, path) in written {
                    let line = line_of(&file.code, at);
                    let module = module_at(&file.module, &inline, at);
                    let target = self
                        .absolute(&module, &path)
                        .and_then(|absolute| self.defining_file(&absolute, 0));
                    // The crate root only re-exports; what it names is defined elsewhere.
                    let counts = |&t: &usize| t != index && !self.files[t].module.is_empty();
                    if let Some(target) = target.filter(counts) {
                        edges.entry(target).or_insert(line);
                    }
                }
                edges
            })
            .collect()
    }

    fn name(&self, index: usize) -> String {
        let path = &self.files[index].path;
        path.strip_prefix(repository())
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Strongly connected components with more than one file (Tarjan's algorithm).
fn circles(edges: &[BTreeMap<usize, usize>]) -> Vec<Vec<usize>> {
    struct Search<'a> {
        edges: &'a [BTreeMap<usize, usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    impl Search<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in self.edges[v].keys() {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let n = edges.len();
    let mut search = Search {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on_stack: vec![false; n],
        next: 0,
        found: Vec::new(),
    };
    for v in 0..n {
        if search.index[v].is_none() {
            search.visit(v);
        }
    }
    search.found
}

fn describe_circles(krate: &Crate) -> Vec<String> {
    let edges = krate.imports();
    circles(&edges)
        .into_iter()
        .map(|component| {
            let members: BTreeSet<usize> = component.iter().copied().collect();
            let links: Vec<String> = component
                .iter()
                .flat_map(|&from| {
                    edges[from]
                        .iter()
                        .filter(|(to, _)| members.contains(to))
                        .map(move |(&to, &line)| (from, to, line))
                })
                .map(|(from, to, line)| {
                    format!("{}:{line} uses {}", krate.name(from), krate.name(to))
                })
                .collect();
            format!("an import circle:\n    {}", links.join("\n    "))
        })
        .collect()
}

fn library() -> Crate {
    let src = repository().join("src");
    load_crate(&src, &[src.join("bin"), src.join("main.rs")])
}

fn binaries() -> Vec<Crate> {
    let bin = repository().join("src").join("bin");
    let Ok(entries) = fs::read_dir(&bin) else {
        return Vec::new();
    };
    entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .map(|dir| load_crate(&dir, &[]))
        .collect()
}

#[test]
fn no_file_imports_a_file_that_imports_it() {
    let mut problems = describe_circles(&library());
    for binary in binaries() {
        problems.extend(describe_circles(&binary));
    }
    assert!(
        problems.is_empty(),
        "{}\nmove what both sides need into a lower file (see ARCHITECTURE.md), or split the \
         shared piece out",
        problems.join("\n")
    );
}

fn floor_of(folder: &str) -> Option<usize> {
    FLOORS.iter().position(|floor| floor.contains(&folder))
}

#[test]
fn folders_use_only_lower_floors() {
    let krate = library();
    let mut problems = Vec::new();
    for (from, targets) in krate.imports().iter().enumerate() {
        let Some(folder) = krate.files[from].module.first() else {
            continue; // lib.rs: re-exports only
        };
        let Some(floor) = floor_of(folder) else {
            problems.push(format!(
                "{}: folder `{folder}` has no floor in ARCHITECTURE.md (and FLOORS here)",
                krate.name(from)
            ));
            continue;
        };
        for (&to, &line) in targets {
            let target = &krate.files[to].module[0];
            let allowed = target == folder || floor_of(target).is_some_and(|t| t < floor);
            if !allowed {
                problems.push(format!(
                    "{}:{line} uses {} (`{folder}` may not use `{target}`)",
                    krate.name(from),
                    krate.name(to)
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "a folder reaches sideways or up:\n  {}\nmove the shared piece down a floor",
        problems.join("\n  ")
    );
}

/// Functions longer than `MAX_FUNCTION_LINES` in `file` with no "one piece" comment in
/// the lines just above them.
fn long_functions(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).expect("readable source");
    let code = without_test_code(&blank_comments_and_strings(&text));
    let original: Vec<&str> = text.lines().collect();
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "fn") else {
            continue;
        };
        let name = words
            .get(at + 1)
            .map(|w| w.split(['(', '<']).next().unwrap_or(w))
            .unwrap_or("?");
        let Some(length) = body_length(&lines[start..]) else {
            continue;
        };
        let explained = original[start.saturating_sub(6)..start]
            .iter()
            .any(|l| l.contains("one piece"));
        if length > MAX_FUNCTION_LINES && !explained {
            found.push(format!(
                "{}:{} fn {name}: {length} lines",
                path.display(),
                start + 1
            ));
        }
    }
    found
}

/// Lines from a `fn` line to its closing brace; None for a declaration without a body.
fn body_length(lines: &[&str]) -> Option<usize> {
    let mut depth = 0i64;
    let mut opened = false;
    for (offset, line) in lines.iter().enumerate() {
        for c in line.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                ';' if !opened => return None,
                _ => {}
            }
            if opened && depth == 0 {
                return Some(offset + 1);
            }
        }
    }
    None
}

#[test]
fn functions_fit_on_a_screen() {
    let mut paths = Vec::new();
    rust_files(&repository().join("src"), &mut paths);
    paths.sort();
    let problems: Vec<String> = paths.iter().flat_map(|p| long_functions(p)).collect();
    assert!(
        problems.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split them along their seams, or say in a \
         comment above why each must be one piece):\n  {}",
        problems.join("\n  ")
    );
}

/// The scanner itself: a circle it cannot see would make the rule above a check that
/// cannot fail.
#[test]
fn the_scanner_sees_imports_through_reexports_and_ignores_comments_and_tests() {
    let code = without_test_code(&blank_comments_and_strings(
        "// use crate::fake::Thing;\nlet s = \"crate::also::Fake\";\nuse crate::graph::{Plan, \
         chunks::{self, Chunk as C}};\npub use super::x::Y;\n#[cfg(test)]\nmod tests { use \
         crate::test_only::Z; }\nfn f<'a>(c: char) { let q = '\\''; crate::ops::run(); }\n",
    ));
    let uses = use_items(&code);
    let paths: Vec<Vec<String>> = uses
        .iter()
        .flat_map(|u| u.paths.iter().map(|(p, _)| p.clone()))
        .collect();
    let names: Vec<&str> = uses
        .iter()
        .flat_map(|u| u.paths.iter().map(|(_, n)| n.as_str()))
        .collect();
    assert_eq!(names, ["Plan", "chunks", "C", "Y"]);
    let strings = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        paths,
        vec![
            strings(&["crate", "graph", "Plan"]),
            strings(&["crate", "graph", "chunks"]),
            strings(&["crate", "graph", "chunks", "Chunk"]),
            strings(&["super", "x", "Y"]),
        ]
    );
    assert_eq!(
        uses.iter().map(|u| u.reexport).collect::<Vec<_>>(),
        [false, true]
    );
    let inline: Vec<Vec<String>> = inline_paths(&code, &BTreeSet::new())
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert!(
        inline.contains(&strings(&["crate", "ops", "run"])),
        "{inline:?}"
    );
    assert!(!code.contains("fake") && !code.contains("Fake") && !code.contains("test_only"));

    // `super` inside an inline module names the file's own module, not its parent.
    let nested = "mod outer { mod inner { use super::X; } }";
    let inline = inline_modules(nested);
    let at = use_items(nested)[0].at;
    assert_eq!(
        module_at(&strings(&["train", "metrics"]), &inline, at),
        strings(&["train", "metrics", "outer", "inner"])
    );

    let edges = vec![
        BTreeMap::from([(1, 1)]),
        BTreeMap::from([(2, 1)]),
        BTreeMap::from([(0, 1)]),
        BTreeMap::new(),
    ];
    assert_eq!(circles(&edges), vec![vec![0, 1, 2]]);
}
