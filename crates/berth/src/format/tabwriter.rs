//! Go's `text/tabwriter` (left-aligned, space padding), the column layout of every
//! docker CLI table: tab-terminated cells, column blocks of consecutive lines, each
//! column as wide as its widest cell plus padding, at least `minwidth`.

/// Layout settings; docker's tables use `minwidth 10, padding 3`.
#[derive(Debug, Clone, Copy)]
pub struct TabWriter {
    pub minwidth: usize,
    pub padding: usize,
}

/// docker's table layout (`tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`).
pub const DOCKER_TABLE: TabWriter = TabWriter {
    minwidth: 10,
    padding: 3,
};

impl TabWriter {
    /// Lays out `text`. The text after the last newline is written as is.
    pub fn format(&self, text: &str) -> String {
        let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
        let mut out = String::with_capacity(text.len() * 2);
        let mut widths = Vec::new();
        self.format_block(&lines, &mut widths, 0, lines.len(), &mut out);
        out
    }

    fn format_block(
        &self,
        lines: &[Vec<&str>],
        widths: &mut Vec<usize>,
        mut line0: usize,
        line1: usize,
        out: &mut String,
    ) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            // A cell exists in this column: lines before it are done.
            self.write_lines(lines, widths, line0, this, out);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 && column + 1 < lines[this].len() {
                let w = cell_width(lines[this][column]) + self.padding;
                width = width.max(w);
                this += 1;
            }
            widths.push(width);
            self.format_block(lines, widths, line0, this, out);
            widths.pop();
            line0 = this;
        }
        self.write_lines(lines, widths, line0, line1, out);
    }

    fn write_lines(
        &self,
        lines: &[Vec<&str>],
        widths: &[usize],
        from: usize,
        to: usize,
        out: &mut String,
    ) {
        for (i, line) in lines.iter().enumerate().take(to).skip(from) {
            for (j, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if j < widths.len() && j + 1 < line.len() {
                    let pad = widths[j].saturating_sub(cell_width(cell));
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            if i + 1 < lines.len() {
                out.push('\n');
            }
        }
    }
}

/// Go's tabwriter counts a cell's width in runes.
fn cell_width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_table_layout() {
        let text = "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\n\
                    fixture/app\t1\t60531c6e24d2\t2 hours ago\t4.3MB\n";
        let want = "REPOSITORY    TAG       IMAGE ID       CREATED       SIZE\n\
                    fixture/app   1         60531c6e24d2   2 hours ago   4.3MB\n";
        assert_eq!(DOCKER_TABLE.format(text), want);
    }

    #[test]
    fn system_df_layout() {
        let text = "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE\nImages\t0\t0\t0B\t0B\nLocal Volumes\t0\t0\t0B\t0B\n";
        let want = "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n\
                    Images          0         0         0B        0B\n\
                    Local Volumes   0         0         0B        0B\n";
        assert_eq!(DOCKER_TABLE.format(text), want);
    }

    #[test]
    fn column_blocks_end_at_a_line_without_that_column() {
        // Go: a line with fewer cells ends the block; widths restart after it.
        let text = "aaaaaaaaaaaaaaa\tb\nno tabs here\nc\td\n";
        let want = "aaaaaaaaaaaaaaa   b\nno tabs here\nc         d\n";
        assert_eq!(DOCKER_TABLE.format(text), want);
    }

    #[test]
    fn trailing_tab_makes_last_text_a_column() {
        let tw = TabWriter {
            minwidth: 0,
            padding: 1,
        };
        assert_eq!(tw.format("a\tb\t\nccc\td\t\n"), "a   b \nccc d \n");
    }

    #[test]
    fn widths_count_runes() {
        let tw = TabWriter {
            minwidth: 0,
            padding: 1,
        };
        assert_eq!(tw.format("é\tx\nab\ty\n"), "é  x\nab y\n");
    }

    #[test]
    fn text_after_last_newline_is_kept() {
        assert_eq!(DOCKER_TABLE.format("a\tb"), "a         b");
        assert_eq!(DOCKER_TABLE.format(""), "");
    }
}
