//! The house reads clean, checked on the source itself (parsed with `syn`, no build needed):
//!
//! - layers only look down: every `crate::` import (in `use` items and in paths) lands in the
//!   same layer or one below, by the table in [`LAYERS`] (the one `lib.rs` and `ARCHITECTURE.md`
//!   describe);
//! - no import circle between files, of any length (names re-exported through a `mod.rs` count
//!   as the file that defines them, so a facade is not a circle);
//! - no source file of the workspace over 1,200 lines.
//!
//! Test-only code (`#[cfg(test)]` items and the files they declare) may reach anywhere and is
//! left out.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    path::{Path, PathBuf},
};

use syn::{Attribute, Item, UseTree, visit::Visit};

/// The layers, bottom first: a module may import from its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["counters", "key_map"],
    &["wire", "xsk"],
    &["stack", "control"],
    &["services", "bridge", "report"],
    &["runtime"],
    &["api", "daemon", "generator"],
    &["cli", "testbed"],
];

/// The largest source file allowed, in lines.
const MAX_LINES: usize = 1200;

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

/// One file of the crate: its module path and what its `use` items make visible in it.
#[derive(Debug, Default)]
struct FileModule {
    file: PathBuf,
    /// Module path from the crate root (`[]` for lib.rs).
    path: Vec<String>,
    /// Names brought into scope by `use` (and `pub use`): name -> absolute path.
    names: HashMap<String, Vec<String>>,
    /// Child modules declared with `mod x;` (not test-only).
    children: BTreeSet<String>,
    /// Absolute paths this file refers to (module path + item), before resolution.
    refs: Vec<Vec<String>>,
}

/// True for `#[cfg(test)]` and `#[cfg(any(test, ...))]`: compiled for tests only (or for a
/// test-support feature besides).
fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| match &a.meta {
        syn::Meta::List(l) if l.path.is_ident("cfg") => l
            .tokens
            .to_string()
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '"'))
            .any(|word| word == "test"),
        _ => false,
    })
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// Walks one file, turning every crate-relative path into an absolute one.
struct Collector<'a> {
    /// The module path of the (inline) module being walked.
    module: Vec<String>,
    /// Child modules of the file's module (for paths like `child::Item`).
    children: &'a BTreeSet<String>,
    /// Top-level modules (for paths in lib.rs).
    roots: &'a BTreeSet<String>,
    names: HashMap<String, Vec<String>>,
    refs: Vec<Vec<String>>,
}

impl Collector<'_> {
    /// The absolute path of `segments` as written in the current module, or `None` when it
    /// leaves the crate (std, dependencies) or names a local item.
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        match first.as_str() {
            "crate" => Some(segments[1..].to_vec()),
            "self" => Some([self.module.clone(), segments[1..].to_vec()].concat()),
            "super" => {
                let mut base = self.module.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                Some([base, rest.to_vec()].concat())
            }
            name if self.children.contains(name) => {
                Some([self.module.clone(), segments.to_vec()].concat())
            }
            name if self.module.is_empty() && self.roots.contains(name) => Some(segments.to_vec()),
            name => self.names.get(name).map(|target| {
                let mut p = target.clone();
                p.extend_from_slice(&segments[1..]);
                p
            }),
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &UseTree) {
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            UseTree::Name(n) => {
                let name = n.ident.to_string();
                let mut full = prefix.clone();
                if name != "self" {
                    full.push(name.clone());
                }
                let local = if name == "self" {
                    prefix.last().cloned().unwrap_or_default()
                } else {
                    name
                };
                self.record_use(local, &full);
            }
            UseTree::Rename(r) => {
                let mut full = prefix.clone();
                if r.ident != "self" {
                    full.push(r.ident.to_string());
                }
                self.record_use(r.rename.to_string(), &full);
            }
            UseTree::Glob(_) => {
                if let Some(abs) = self.absolute(prefix) {
                    self.refs.push(abs);
                }
            }
            UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn record_use(&mut self, local: String, full: &[String]) {
        if let Some(abs) = self.absolute(full) {
            self.refs.push(abs.clone());
            self.names.insert(local, abs);
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast Item) {
        if is_cfg_test(item_attrs(item)) {
            return;
        }
        match item {
            Item::Use(u) => {
                let mut prefix = Vec::new();
                if u.leading_colon.is_some() {
                    return; // an extern crate
                }
                self.use_tree(&mut prefix, &u.tree);
            }
            Item::Mod(m) if m.content.is_some() => {
                self.module.push(m.ident.to_string());
                syn::visit::visit_item_mod(self, m);
                self.module.pop();
            }
            _ => syn::visit::visit_item(self, item),
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1
            && matches!(segments[0].as_str(), "crate" | "self" | "super")
            && let Some(abs) = self.absolute(&segments)
        {
            self.refs.push(abs);
        }
        syn::visit::visit_path(self, path);
    }
}

/// The crate's file modules, from `lib.rs` down, without test-only files.
fn load_crate(src: &Path) -> Vec<FileModule> {
    let mut out = Vec::new();
    let mut todo = vec![(src.join("lib.rs"), Vec::<String>::new())];
    let mut roots = BTreeSet::new();
    while let Some((file, path)) = todo.pop() {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // Where this file's child modules live.
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "mod.rs") => file.parent().unwrap().to_path_buf(),
            _ => file.with_extension(""),
        };
        let mut children = BTreeSet::new();
        for item in &ast.items {
            if let Item::Mod(m) = item
                && m.content.is_none()
                && !is_cfg_test(&m.attrs)
            {
                let name = m.ident.to_string();
                let flat = dir.join(format!("{name}.rs"));
                let nested = dir.join(&name).join("mod.rs");
                let child = if flat.exists() { flat } else { nested };
                todo.push((child, [path.clone(), vec![name.clone()]].concat()));
                children.insert(name);
            }
        }
        if path.is_empty() {
            roots = children.clone();
        }
        let mut c = Collector {
            module: path.clone(),
            children: &children,
            roots: &roots,
            names: HashMap::new(),
            refs: Vec::new(),
        };
        c.visit_file(&ast);
        let (names, refs) = (c.names, c.refs);
        out.push(FileModule {
            file,
            path,
            names,
            children,
            refs,
        });
    }
    out
}

/// The file an absolute path lands in: the longest prefix that is a file module, following
/// names a `mod.rs` (or any file) re-exports to the file that defines them.
fn resolve<'a>(modules: &'a [FileModule], path: &[String]) -> Option<&'a FileModule> {
    let mut path = path.to_vec();
    for _ in 0..16 {
        let (len, m) = (0..=path.len())
            .rev()
            .find_map(|n| modules.iter().find(|m| m.path == path[..n]).map(|m| (n, m)))?;
        let Some(next) = path.get(len) else {
            return Some(m);
        };
        if m.children.contains(next) {
            return Some(m); // a child module the resolver did not load (test-only)
        }
        match m.names.get(next) {
            Some(target) if target.as_slice() != path.as_slice() => {
                let mut p = target.clone();
                p.extend_from_slice(&path[len + 1..]);
                path = p;
            }
            _ => return Some(m),
        }
    }
    None
}

fn name(m: &FileModule) -> String {
    if m.path.is_empty() {
        "lib".into()
    } else {
        m.path.join("::")
    }
}

/// File-to-file imports of the crate: (importer, imported).
fn imports(modules: &[FileModule]) -> BTreeSet<(String, String)> {
    let mut edges = BTreeSet::new();
    for m in modules {
        for r in &m.refs {
            if let Some(target) = resolve(modules, r)
                && target.file != m.file
            {
                edges.insert((name(m), name(target)));
            }
        }
    }
    edges
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn layers_only_look_down() {
    let modules = load_crate(&src());
    for m in &modules {
        if let Some(top) = m.path.first() {
            assert!(
                layer_of(top).is_some(),
                "module {top} is in no layer: add it to LAYERS (and to ARCHITECTURE.md)"
            );
        }
    }
    let mut up = Vec::new();
    for (from, to) in imports(&modules) {
        let top = |n: &str| n.split("::").next().unwrap_or("").to_string();
        if from == "lib" {
            continue;
        }
        let (lf, lt) = (layer_of(&top(&from)), layer_of(&top(&to)));
        if let (Some(lf), Some(lt)) = (lf, lt)
            && lt > lf
        {
            up.push(format!("{from} (layer {lf}) imports {to} (layer {lt})"));
        }
    }
    assert!(
        up.is_empty(),
        "imports that run up a layer:\n{}",
        up.join("\n")
    );
}

#[test]
fn no_import_circles() {
    let modules = load_crate(&src());
    let edges = imports(&modules);
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in &edges {
        graph.entry(a).or_default().push(b);
    }
    // Tarjan's strongly connected components: any with two files or more is a circle.
    struct Tarjan<'g> {
        graph: &'g BTreeMap<&'g str, Vec<&'g str>>,
        index: HashMap<&'g str, usize>,
        low: HashMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        circles: Vec<Vec<&'g str>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in self.graph.get(v).map(|x| x.as_slice()).unwrap_or(&[]) {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    self.circles.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph: &graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        circles: Vec::new(),
    };
    for &v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    let shown: Vec<String> = t.circles.iter().map(|c| c.join(" <-> ")).collect();
    assert!(shown.is_empty(), "import circles:\n{}", shown.join("\n"));
}

#[test]
fn the_checker_sees_imports_up_and_circles() {
    // The checker must not pass by seeing nothing: the crate's real imports include these.
    let edges = imports(&load_crate(&src()));
    for (from, to) in [
        ("runtime::worker", "runtime::worker::tcp_sockets"),
        ("runtime::worker::ingress", "wire::classify"),
        ("stack::tcp::connection::input", "stack::tcp::counters"),
        ("wire::tcp", "wire::seq"),
        ("api::tcp", "api::stack"),
    ] {
        assert!(
            edges.contains(&(from.to_string(), to.to_string())),
            "{from} -> {to} not seen; seen from {from}: {:?}",
            edges.iter().filter(|(a, _)| a == from).collect::<Vec<_>>()
        );
    }
}

/// Every `.rs` file under `dir`, skipping build output.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let skip = p
            .file_name()
            .is_some_and(|n| n == "target" || n.to_string_lossy().starts_with('.'));
        if skip {
            continue;
        }
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_source_file_is_over_1200_lines() {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut files = Vec::new();
    rust_files(&workspace, &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let big: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = fs::read_to_string(f).ok()?.lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(
        big.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        big.join("\n")
    );
}
