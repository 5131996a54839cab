//! The documentation stays true to the tree: every relative link in README.md,
//! ARCHITECTURE.md and docs/ points at a file that exists (and an anchor at a heading in
//! it), and the commands the README names are the ones `mobilenet --help` lists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// README.md, ARCHITECTURE.md and every .md file under docs/.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    let mut folders = vec![root().join("docs")];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The lines outside fenced code blocks: code is not markdown, and a `# comment` in a shell
/// block is no heading.
/// Each with its line number, counting from 1.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            lines.push((index + 1, line));
        }
    }
    lines
}

/// The line with its `inline code` blanked, so that brackets in code are not links.
/// `in_code` carries a code span that a line break splits over to the next line.
fn without_code_spans(line: &str, in_code: &mut bool) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c == '`' {
            *in_code = !*in_code;
            out.push('`');
        } else if !*in_code {
            out.push(c);
        }
    }
    out
}

/// The targets of the inline links and images `[text](target)` on a line without code.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let before = &rest[..at];
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        if before.contains('[') {
            // A title after the target ("path "title"") is not part of the path.
            let target = after[..end].split_whitespace().next().unwrap_or("");
            targets.push(target.to_string());
        }
        rest = &after[end..];
    }
    targets
}

/// A heading's anchor as GitHub makes it: the text as rendered, lowercased, punctuation
/// other than '-' and '_' removed, spaces turned into '-'.
fn slug(heading: &str) -> String {
    let rendered = rendered_text(heading);
    rendered
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// Heading text without markdown: `[text](target)` becomes text, code and emphasis marks go.
fn rendered_text(heading: &str) -> String {
    let mut out = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out.replace(['`', '*'], "")
}

/// The anchors of a markdown file's headings, duplicates numbered as GitHub numbers them.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim().trim_end_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// `path` with `.` and `..` resolved lexically, relative to the repository when inside it:
/// how messages name files.
fn shown(path: &Path) -> String {
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    clean
        .strip_prefix(root())
        .unwrap_or(&clean)
        .display()
        .to_string()
}

/// What is wrong with one link target, if anything.
fn check_link(document: &Path, text: &str, target: &str) -> Option<String> {
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        document.to_path_buf()
    } else {
        document.parent().expect("a document's folder").join(path)
    };
    if !file.exists() {
        return Some(format!("points at {}, which does not exist", shown(&file)));
    }
    let anchor = anchor?;
    if file.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let headings = if file == document {
        anchors(text)
    } else {
        anchors(&read(&file))
    };
    (!headings.contains(anchor)).then(|| {
        format!(
            "points at #{anchor}, which is no heading of {} (its anchors: {})",
            shown(&file),
            headings.into_iter().collect::<Vec<_>>().join(", ")
        )
    })
}

#[test]
fn relative_links_point_at_existing_files_and_headings() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let text = read(&document);
        let mut in_code = false;
        for (line_number, line) in prose_lines(&text) {
            // A code span ends with its paragraph or table row at the latest.
            if line.trim().is_empty() || line.starts_with('|') {
                in_code = false;
            }
            let prose = without_code_spans(line, &mut in_code);
            for target in link_targets(&prose) {
                if target.starts_with("http://")
                    || target.starts_with("https://")
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                checked += 1;
                if let Some(problem) = check_link(&document, &text, &target) {
                    problems.push(format!(
                        "{}:{line_number}: link ({target}) {problem}",
                        shown(&document),
                    ));
                }
            }
        }
    }
    assert!(
        checked > 0,
        "no relative links found: is the link parser broken?"
    );
    assert!(
        problems.is_empty(),
        "broken links in the documentation:\n{}",
        problems.join("\n")
    );
}

/// The subcommands `mobilenet --help` lists (clap's own `help` left out).
fn help_commands() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .arg("--help")
        .output()
        .expect("run mobilenet --help");
    assert!(
        output.status.success(),
        "mobilenet --help failed: {output:?}"
    );
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    let commands: BTreeSet<String> = help
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        // A command's line is indented by two spaces; wrapped descriptions by more.
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    assert!(
        !commands.is_empty(),
        "found no commands in mobilenet --help:\n{help}"
    );
    commands
}

/// The lines of the README's section whose heading starts with `title`.
fn readme_section(readme: &str, title: &str) -> Vec<String> {
    let mut lines = readme.lines().skip_while(|line| {
        !(line.starts_with('#') && line.trim_start_matches('#').trim().starts_with(title))
    });
    let heading = lines
        .next()
        .unwrap_or_else(|| panic!("README.md has no heading starting with {title:?}"));
    let level = heading.chars().take_while(|&c| c == '#').count();
    let mut in_fence = false;
    lines
        .take_while(|line| {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
            }
            let hashes = line.chars().take_while(|&c| c == '#').count();
            in_fence || hashes == 0 || hashes > level
        })
        .map(str::to_string)
        .collect()
}

/// The subcommands the quick start's code block runs: `cargo run ... -- SUB` and
/// `mobilenet SUB`.
fn quick_start_commands(readme: &str) -> BTreeSet<String> {
    let section = readme_section(readme, "Quick start");
    let block: Vec<&String> = section
        .iter()
        .skip_while(|line| !line.trim_start().starts_with("```"))
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with("```"))
        .collect();
    assert!(
        !block.is_empty(),
        "README.md's Quick start section has no fenced code block"
    );
    let mut commands = BTreeSet::new();
    for line in block {
        let code = line.split('#').next().unwrap_or("");
        let words: Vec<&str> = code.split_whitespace().collect();
        for (i, word) in words.iter().enumerate() {
            let next = words.get(i + 1).filter(|w| !w.starts_with('-'));
            let after_cargo_run =
                *word == "--" && words[..i].windows(2).any(|w| w == ["cargo", "run"]);
            let after_binary = *word == "mobilenet" || word.ends_with("/mobilenet");
            if let (Some(sub), true) = (next, after_cargo_run || after_binary) {
                commands.insert(sub.to_string());
            }
        }
    }
    commands
}

/// The commands in the first column of the README's command table (`| \`name\` | ...`).
fn table_commands(readme: &str) -> BTreeSet<String> {
    readme_section(readme, "Commands")
        .iter()
        .filter_map(|line| {
            let cell = line.strip_prefix('|')?.split('|').next()?.trim();
            let name = cell.strip_prefix('`')?.strip_suffix('`')?;
            Some(name.trim_start_matches("mobilenet ").to_string())
        })
        .collect()
}

#[test]
fn quick_start_commands_exist() {
    let readme = read(&root().join("README.md"));
    let named = quick_start_commands(&readme);
    assert!(
        !named.is_empty(),
        "found no `cargo run -- SUB` or `mobilenet SUB` in README.md's Quick start block"
    );
    let available = help_commands();
    let missing: Vec<&String> = named.difference(&available).collect();
    assert!(
        missing.is_empty(),
        "README.md's Quick start runs {missing:?}, which mobilenet --help does not list \
         (it lists {available:?})"
    );
}

#[test]
fn readme_command_table_matches_help() {
    let readme = read(&root().join("README.md"));
    let table = table_commands(&readme);
    let available = help_commands();
    let unknown: Vec<&String> = table.difference(&available).collect();
    let undocumented: Vec<&String> = available.difference(&table).collect();
    assert!(
        unknown.is_empty() && undocumented.is_empty(),
        "README.md's Commands table and mobilenet --help disagree: in the table but not in \
         --help: {unknown:?}; in --help but not in the table: {undocumented:?}"
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug("`summary`: how parameters and mult-adds are counted"),
        "summary-how-parameters-and-mult-adds-are-counted"
    );
    assert_eq!(slug("Many GPUs, many machines"), "many-gpus-many-machines");
    assert_eq!(slug("Tar shards (WebDataset)"), "tar-shards-webdataset");
    assert_eq!(slug("[Link](x.md) and snake_case"), "link-and-snake_case");
    let numbered = anchors("# A\n\n```sh\n# not a heading\n```\n## A\n");
    assert_eq!(
        numbered,
        BTreeSet::from(["a".to_string(), "a-1".to_string()])
    );
}
