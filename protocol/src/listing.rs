//! A listed directory as a file manager holds it: the entries in the order shown, which are
//! hidden, the selection and the cursor. Plain state, no I/O, so every rule of the Files tab's
//! list is a unit test here; the page only draws it and turns clicks and keys into these calls.
//!
//! Invariants:
//! - `rows()` is `entries` without dot files (unless shown), directories (and links to them)
//!   first, then by the sort key, ties broken by name; it is recomputed whenever the entries,
//!   the sort or the hidden switch change, never on a click or a key.
//! - The selection only ever names entries that are listed: a re-listing of the same directory
//!   keeps what is still there, a listing of another directory starts with none.
//! - The cursor is an index into `rows()`, or 0 when there are none.
//! - Entries come in checked (`fs::check_listing`): each name one path component, listed once.

use std::collections::HashSet;
use std::rc::Rc;

use crate::fs::Entry;

/// What the rows are ordered by (after directories first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Name,
    Size,
    Modified,
}

/// Where a key moves the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Up,
    Down,
    First,
    Last,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// The directory as the host resolved it ("" until the first listing).
    path: String,
    entries: Rc<Vec<Entry>>,
    rows: Rc<Vec<Entry>>,
    sort: SortBy,
    ascending: bool,
    show_hidden: bool,
    selected: HashSet<String>,
    cursor: usize,
}

impl Default for Listing {
    fn default() -> Self {
        Self {
            path: String::new(),
            entries: Rc::default(),
            rows: Rc::default(),
            sort: SortBy::Name,
            ascending: true,
            show_hidden: false,
            selected: HashSet::new(),
            cursor: 0,
        }
    }
}

impl Listing {
    /// A new listing of `path` came: the same directory keeps its selection (what is gone
    /// from it leaves it), another starts afresh.
    pub fn listed(&mut self, path: String, entries: Vec<Entry>) {
        if path != self.path {
            self.selected.clear();
            self.cursor = 0;
        }
        self.path = path;
        let listed: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        self.selected.retain(|name| listed.contains(name.as_str()));
        self.entries = Rc::new(entries);
        self.arrange();
    }

    /// The directory shown, as the host resolved it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Every entry listed, hidden ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The rows in the order shown.
    pub fn rows(&self) -> &Rc<Vec<Entry>> {
        &self.rows
    }

    pub fn sort(&self) -> (SortBy, bool) {
        (self.sort, self.ascending)
    }

    /// A click on a column's header: the same column again turns the order round, another
    /// sorts by it ascending.
    pub fn sort_by(&mut self, by: SortBy) {
        self.ascending = by != self.sort || !self.ascending;
        self.sort = by;
        self.arrange();
    }

    pub fn show_hidden(&self) -> bool {
        self.show_hidden
    }

    /// Show or hide dot files; a hidden entry leaves the selection.
    pub fn set_show_hidden(&mut self, show: bool) {
        self.show_hidden = show;
        self.arrange();
        let shown: HashSet<&str> = self.rows.iter().map(|e| e.name.as_str()).collect();
        self.selected.retain(|name| shown.contains(name.as_str()));
    }

    /// Whether `name` is taken in this directory (hidden or not).
    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.name == name)
    }

    /// A name not taken here: `name (1).ext`, `name (2).ext`…
    pub fn free_name(&self, name: &str) -> String {
        let (stem, ext) = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
            _ => (name, String::new()),
        };
        (1..)
            .map(|n| format!("{stem} ({n}){ext}"))
            .find(|candidate| !self.has(candidate))
            .unwrap_or_else(|| name.to_owned())
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The row under the cursor.
    pub fn at_cursor(&self) -> Option<&Entry> {
        self.rows.get(self.cursor)
    }

    /// Move the cursor; stays inside the rows.
    pub fn move_cursor(&mut self, to: Move) {
        let last = self.rows.len().saturating_sub(1);
        let at = self.cursor.min(last);
        self.cursor = match to {
            Move::Up => at.saturating_sub(1),
            Move::Down => (at + 1).min(last),
            Move::First => 0,
            Move::Last => last,
        };
    }

    /// A click on row `index`: it alone is selected, or with `add` (Ctrl/⌘) it joins or leaves
    /// the selection. The cursor goes there.
    pub fn click(&mut self, index: usize, add: bool) {
        let Some(name) = self.rows.get(index).map(|e| e.name.clone()) else { return };
        if !add {
            self.selected.clear();
            self.selected.insert(name);
        } else if !self.selected.remove(&name) {
            self.selected.insert(name);
        }
        self.cursor = index;
    }

    /// Space: the row under the cursor joins or leaves the selection.
    pub fn toggle_at_cursor(&mut self) {
        if let Some(name) = self.at_cursor().map(|e| e.name.clone()) {
            if !self.selected.remove(&name) {
                self.selected.insert(name);
            }
        }
    }

    /// Ctrl/⌘-A: every row shown.
    pub fn select_all(&mut self) {
        self.selected = self.rows.iter().map(|e| e.name.clone()).collect();
    }

    pub fn is_selected(&self, name: &str) -> bool {
        self.selected.contains(name)
    }

    /// The selected rows, in the order shown.
    pub fn selection(&self) -> Vec<&Entry> {
        self.rows.iter().filter(|e| self.selected.contains(&e.name)).collect()
    }

    /// The one selected row, when exactly one is.
    pub fn single(&self) -> Option<&Entry> {
        match self.selection()[..] {
            [entry] => Some(entry),
            _ => None,
        }
    }

    fn arrange(&mut self) {
        let mut rows: Vec<Entry> =
            self.entries.iter().filter(|e| self.show_hidden || !e.name.starts_with('.')).cloned().collect();
        let (by, ascending) = (self.sort, self.ascending);
        rows.sort_by(|a, b| {
            let dirs_first = b.is_dir_like().cmp(&a.is_dir_like());
            let by_name = a.name.to_lowercase().cmp(&b.name.to_lowercase()).then_with(|| a.name.cmp(&b.name));
            let order = match by {
                SortBy::Name => by_name,
                SortBy::Size => a.size.cmp(&b.size).then(by_name),
                SortBy::Modified => a.mtime_ms.cmp(&b.mtime_ms).then(by_name),
            };
            dirs_first.then(if ascending { order } else { order.reverse() })
        });
        self.rows = Rc::new(rows);
        self.cursor = self.cursor.min(self.rows.len().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Kind;

    fn entry(name: &str, kind: Kind, size: u64, mtime_ms: i64) -> Entry {
        Entry {
            name: name.to_owned(),
            raw_name: None,
            kind,
            size,
            mode: 0o644,
            owner: "me".into(),
            group: "me".into(),
            mtime_ms,
            target: None,
            target_kind: None,
        }
    }

    fn names(listing: &Listing) -> Vec<&str> {
        listing.rows().iter().map(|e| e.name.as_str()).collect()
    }

    fn home() -> Listing {
        let mut listing = Listing::default();
        listing.listed(
            "/home/me".into(),
            vec![
                entry("b.txt", Kind::File, 30, 3),
                entry(".profile", Kind::File, 5, 9),
                entry("Zeta", Kind::Dir, 0, 1),
                entry("a.txt", Kind::File, 10, 7),
                entry("C.md", Kind::File, 20, 5),
                entry("alpha", Kind::Dir, 0, 2),
            ],
        );
        listing
    }

    #[test]
    fn directories_come_first_then_names_without_case_and_dot_files_hide() {
        let listing = home();
        assert_eq!(names(&listing), ["alpha", "Zeta", "a.txt", "b.txt", "C.md"]);
        assert_eq!(listing.len(), 6, "the hidden entry is still listed");
    }

    #[test]
    fn a_link_to_a_directory_sorts_with_the_directories() {
        let mut listing = Listing::default();
        let mut link = entry("link", Kind::Symlink, 4, 0);
        link.target_kind = Some(Kind::Dir);
        listing.listed("/".into(), vec![entry("file", Kind::File, 1, 0), link, entry("dir", Kind::Dir, 0, 0)]);
        assert_eq!(names(&listing), ["dir", "link", "file"]);
    }

    #[test]
    fn a_header_click_sorts_by_it_and_a_second_turns_the_order_round() {
        let mut listing = home();
        listing.sort_by(SortBy::Size);
        assert_eq!(listing.sort(), (SortBy::Size, true));
        assert_eq!(names(&listing), ["alpha", "Zeta", "a.txt", "C.md", "b.txt"]);
        listing.sort_by(SortBy::Size);
        assert_eq!(listing.sort(), (SortBy::Size, false));
        assert_eq!(names(&listing), ["Zeta", "alpha", "b.txt", "C.md", "a.txt"], "directories stay first");
        listing.sort_by(SortBy::Modified);
        assert_eq!(listing.sort(), (SortBy::Modified, true));
        assert_eq!(names(&listing), ["Zeta", "alpha", "b.txt", "C.md", "a.txt"]);
    }

    #[test]
    fn showing_hidden_files_puts_them_in_order_and_hiding_them_unselects_them() {
        let mut listing = home();
        listing.set_show_hidden(true);
        assert_eq!(names(&listing), ["alpha", "Zeta", ".profile", "a.txt", "b.txt", "C.md"]);
        listing.click(2, false);
        assert!(listing.is_selected(".profile"));
        listing.set_show_hidden(false);
        assert!(listing.selection().is_empty());
    }

    #[test]
    fn a_click_selects_one_and_ctrl_click_adds_or_removes() {
        let mut listing = home();
        listing.click(2, false);
        listing.click(3, true);
        assert_eq!(listing.selection().iter().map(|e| &e.name).collect::<Vec<_>>(), ["a.txt", "b.txt"]);
        assert_eq!(listing.cursor(), 3);
        assert!(listing.single().is_none());
        listing.click(2, true);
        assert_eq!(listing.single().map(|e| e.name.as_str()), Some("b.txt"));
        listing.click(4, false);
        assert_eq!(listing.single().map(|e| e.name.as_str()), Some("C.md"));
        listing.click(4, false);
        assert_eq!(listing.single().map(|e| e.name.as_str()), Some("C.md"), "a plain click never unselects");
        listing.click(99, false);
        assert_eq!(listing.cursor(), 4, "a row that is not there changes nothing");
    }

    #[test]
    fn keys_move_the_cursor_inside_the_rows_and_space_and_select_all_select() {
        let mut listing = home();
        listing.move_cursor(Move::Up);
        assert_eq!(listing.cursor(), 0);
        listing.move_cursor(Move::Last);
        assert_eq!(listing.at_cursor().map(|e| e.name.as_str()), Some("C.md"));
        listing.move_cursor(Move::Down);
        assert_eq!(listing.cursor(), 4);
        listing.move_cursor(Move::First);
        listing.move_cursor(Move::Down);
        listing.toggle_at_cursor();
        assert_eq!(listing.single().map(|e| e.name.as_str()), Some("Zeta"));
        listing.toggle_at_cursor();
        assert!(listing.selection().is_empty());
        listing.select_all();
        assert_eq!(listing.selection().len(), 5, "every row shown, not the hidden one");
        let mut empty = Listing::default();
        empty.move_cursor(Move::Down);
        assert_eq!((empty.cursor(), empty.at_cursor()), (0, None));
    }

    #[test]
    fn listing_the_same_directory_again_keeps_what_is_still_there() {
        let mut listing = home();
        listing.select_all();
        listing.move_cursor(Move::Last);
        let kept = vec![entry("a.txt", Kind::File, 10, 7), entry("new", Kind::File, 1, 1)];
        listing.listed("/home/me".into(), kept.clone());
        assert_eq!(listing.selection().iter().map(|e| &e.name).collect::<Vec<_>>(), ["a.txt"]);
        assert_eq!(listing.cursor(), 1, "the cursor stays inside the rows");
        listing.listed("/tmp".into(), kept);
        assert!(listing.selection().is_empty());
        assert_eq!(listing.cursor(), 0);
        assert_eq!(listing.path(), "/tmp");
    }

    #[test]
    fn a_free_name_counts_up_before_the_extension() {
        let mut listing = home();
        assert_eq!(listing.free_name("a.txt"), "a (1).txt");
        assert_eq!(listing.free_name(".profile"), ".profile (1)", "a dot file has no extension");
        assert_eq!(listing.free_name("Zeta"), "Zeta (1)");
        let mut taken = (*listing.entries).clone();
        taken.push(entry("a (1).txt", Kind::File, 1, 1));
        listing.listed("/home/me".into(), taken);
        assert_eq!(listing.free_name("a.txt"), "a (2).txt");
    }
}
