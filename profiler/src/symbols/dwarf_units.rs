//! DWARF read one compilation unit at a time.
//!
//! addr2line's `Context` parses every unit's abbreviations and line-program
//! header when it is built: for libc's debug file (4,000 units) that is over
//! 20 MiB of heap before the first lookup, although a trace's stacks touch a
//! few dozen of its units. So a file is indexed instead: which address
//! ranges belong to which unit (from `.debug_aranges`, or for a unit it does
//! not cover, from the unit's root entry or line program, parsed and dropped
//! at once), and a unit gets its own addr2line context, over a `.debug_info`
//! cut down to that unit, the first time an address in it is looked up.
//!
//! Cutting `.debug_info` shifts every section offset in it, which is only
//! right while no entry refers to another unit by section offset
//! (`DW_FORM_ref_addr`, and the supplementary-file forms). Rust and LTO
//! builds use such references for inlined functions, so a file whose
//! abbreviation tables name one of those forms anywhere is read whole,
//! through one context, as before.

use addr2line::Context;
use gimli::{DwarfSections, Reader as _, Section as _};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The reader the symboliser uses over section bytes.
pub(super) type Reader =
    gimli::EndianReader<gimli::RunTimeEndian, super::object_file::SectionBytes>;

/// A file's DWARF, ready for lookups.
pub(super) enum Dwarf {
    /// One context over all units (a file with cross-unit references).
    Whole(Box<Context<Reader>>),
    /// Units parsed when first needed.
    ByUnit(Box<UnitIndex>),
}

impl Dwarf {
    /// Indexes `sections`, unit by unit when they allow it.
    pub(super) fn new(sections: DwarfSections<Reader>) -> Option<Dwarf> {
        if refers_across_units(sections.debug_abbrev.reader().clone()) {
            let whole = Context::from_dwarf(sections.borrow(Clone::clone)).ok()?;
            return Some(Dwarf::Whole(Box::new(whole)));
        }
        UnitIndex::new(sections).map(|index| Dwarf::ByUnit(Box::new(index)))
    }

    /// Calls `f` with the context that covers `probe`, if any.
    pub(super) fn with_context<T>(
        &self,
        probe: u64,
        f: impl FnOnce(&Context<Reader>) -> T,
    ) -> Option<T> {
        match self {
            Dwarf::Whole(ctx) => Some(f(ctx)),
            Dwarf::ByUnit(index) => index.context_for(probe).map(|ctx| f(&ctx)),
        }
    }
}

/// Address ranges to units, and the contexts of the units looked up so far.
pub(super) struct UnitIndex {
    sections: DwarfSections<Reader>,
    /// `(begin, end, unit)` sorted by `begin`.
    ranges: Vec<(u64, u64, u32)>,
    /// The largest `end` among `ranges[..=i]`, to find nested or
    /// overlapping ranges without scanning them all.
    max_end: Vec<u64>,
    /// `(offset, length)` of each unit in `.debug_info`.
    units: Vec<(usize, usize)>,
    /// Contexts built so far (`None`: the unit could not be parsed).
    contexts: RefCell<HashMap<u32, Option<Rc<Context<Reader>>>>>,
}

impl UnitIndex {
    fn new(sections: DwarfSections<Reader>) -> Option<UnitIndex> {
        let dwarf = sections.borrow(Clone::clone);
        let mut covered: HashMap<usize, Vec<(u64, u64)>> = HashMap::new();
        let mut headers = dwarf.debug_aranges.headers();
        while let Ok(Some(header)) = headers.next() {
            let list = covered.entry(header.debug_info_offset().0).or_default();
            let mut entries = header.entries();
            while let Ok(Some(entry)) = entries.next() {
                if entry.length() != 0 {
                    let r = entry.range();
                    list.push((r.begin, r.end));
                }
            }
        }
        let mut ranges = Vec::new();
        let mut units = Vec::new();
        let mut headers = dwarf.units();
        while let Ok(Some(header)) = headers.next() {
            let Some(offset) = header.offset().as_debug_info_offset() else {
                continue;
            };
            if !matches!(
                header.type_(),
                gimli::UnitType::Compilation | gimli::UnitType::Skeleton(_)
            ) {
                continue;
            }
            let id = units.len() as u32;
            units.push((offset.0, header.length_including_self()));
            match covered.get(&offset.0) {
                Some(list) if !list.is_empty() => {
                    ranges.extend(list.iter().map(|&(b, e)| (b, e, id)));
                }
                _ => uncovered_unit_ranges(&dwarf, header, id, &mut ranges),
            }
        }
        ranges.sort_unstable_by_key(|r| r.0);
        let max_end = ranges
            .iter()
            .scan(0u64, |m, r| {
                *m = (*m).max(r.1);
                Some(*m)
            })
            .collect();
        Some(UnitIndex {
            sections,
            ranges,
            max_end,
            units,
            contexts: RefCell::new(HashMap::new()),
        })
    }

    /// The context of the unit holding `probe`, built on first use.
    fn context_for(&self, probe: u64) -> Option<Rc<Context<Reader>>> {
        let unit = self.unit_of(probe)?;
        if let Some(found) = self.contexts.borrow().get(&unit) {
            return found.clone();
        }
        let built = self.build(unit).map(Rc::new);
        self.contexts.borrow_mut().insert(unit, built.clone());
        built
    }

    /// The unit whose ranges hold `probe` (the innermost-starting one when
    /// ranges overlap).
    fn unit_of(&self, probe: u64) -> Option<u32> {
        let mut i = self.ranges.partition_point(|r| r.0 <= probe);
        while i > 0 && self.max_end[i - 1] > probe {
            i -= 1;
            let (begin, end, unit) = self.ranges[i];
            if begin <= probe && probe < end {
                return Some(unit);
            }
        }
        None
    }

    /// An addr2line context over unit `unit` alone.
    fn build(&self, unit: u32) -> Option<Context<Reader>> {
        let (offset, len) = *self.units.get(unit as usize)?;
        let mut info = self.sections.debug_info.reader().clone();
        info.skip(offset).ok()?;
        info.truncate(len).ok()?;
        let mut dwarf = self.sections.borrow(Clone::clone);
        dwarf.debug_info = info.into();
        // Its offsets name units of the whole section: the unit's own
        // ranges are read from its root entry instead.
        let mut empty = self.sections.debug_aranges.reader().clone();
        empty.empty();
        dwarf.debug_aranges = empty.into();
        Context::from_dwarf(dwarf).ok()
    }
}

/// Ranges of a unit `.debug_aranges` does not cover: its root entry's, or
/// failing those its line program's sequences. The unit is parsed and
/// dropped.
fn uncovered_unit_ranges(
    dwarf: &gimli::Dwarf<Reader>,
    header: gimli::UnitHeader<Reader>,
    id: u32,
    out: &mut Vec<(u64, u64, u32)>,
) {
    let Ok(unit) = dwarf.unit(header) else {
        return;
    };
    let before = out.len();
    if let Ok(mut iter) = dwarf.unit_ranges(&unit) {
        while let Ok(Some(r)) = iter.next() {
            if r.begin < r.end {
                out.push((r.begin, r.end, id));
            }
        }
    }
    if out.len() > before {
        return;
    }
    if let Some(program) = unit.line_program.clone()
        && let Ok((_, sequences)) = program.sequences()
    {
        out.extend(
            sequences
                .iter()
                .filter(|s| s.start < s.end)
                .map(|s| (s.start, s.end, id)),
        );
    }
}

/// True when any abbreviation in `.debug_abbrev` has an attribute whose form
/// refers to an entry by section offset or in a supplementary file. The
/// section is scanned as a sequence of tables; a malformed one ends the scan
/// and counts as true, which only costs memory.
fn refers_across_units(abbrev: Reader) -> bool {
    const CROSS_UNIT: [u16; 4] = [
        gimli::constants::DW_FORM_ref_addr.0,
        gimli::constants::DW_FORM_ref_sup4.0,
        gimli::constants::DW_FORM_ref_sup8.0,
        gimli::constants::DW_FORM_GNU_ref_alt.0,
    ];
    let scan = |mut r: Reader| -> gimli::Result<bool> {
        while !r.is_empty() {
            // Abbreviation code; 0 ends a table (and pads between tables).
            if r.read_uleb128()? == 0 {
                continue;
            }
            r.read_uleb128()?; // tag
            r.read_u8()?; // has children
            loop {
                let name = r.read_uleb128()?;
                let form = r.read_uleb128()?;
                if name == 0 && form == 0 {
                    break;
                }
                if form == u64::from(gimli::constants::DW_FORM_implicit_const.0) {
                    r.read_sleb128()?;
                }
                if CROSS_UNIT.iter().any(|&f| u64::from(f) == form) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    };
    scan(abbrev).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::object_file::SectionBytes;

    fn reader(bytes: &[u8]) -> Reader {
        gimli::EndianReader::new(
            SectionBytes::Owned(Rc::new(bytes.to_vec())),
            gimli::RunTimeEndian::Little,
        )
    }

    // Two tables: code 1 (compile_unit, children, name:strp, an
    // implicit_const attribute), code 2 (subprogram, no children,
    // abstract_origin with the form under test).
    fn tables(origin_form: u8) -> Vec<u8> {
        vec![
            1,
            0x11,
            1,
            0x03,
            0x0e,
            0x3a,
            0x21,
            0x05,
            0,
            0,
            0, // table 1
            2,
            0x2e,
            0,
            0x31,
            origin_form,
            0,
            0,
            0, // table 2
        ]
    }

    #[test]
    fn unit_local_references_allow_reading_unit_by_unit() {
        assert!(!refers_across_units(reader(&tables(0x13)))); // ref4
        assert!(!refers_across_units(reader(&[])));
    }

    #[test]
    fn a_reference_by_section_offset_anywhere_needs_the_whole_file() {
        assert!(refers_across_units(reader(&tables(0x10)))); // ref_addr
        assert!(refers_across_units(reader(&tables(0x1c)))); // ref_sup4
    }

    #[test]
    fn malformed_tables_are_read_whole() {
        let mut t = tables(0x13);
        t.truncate(13);
        assert!(refers_across_units(reader(&t)));
    }
}
