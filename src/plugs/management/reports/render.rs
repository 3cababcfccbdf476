//! A report's rows as the caller receives them: JSON (an object per row), CSV (RFC 4180, text
//! cells neutralised against formulas) or an A4 PDF (the business, the parameters, the chart and
//! the table with its totals). Columns the caller may not see are left out of all three.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::names;
use crate::core::reports::{Cell, ChartKind, Column, ColumnKind, RefKind, Report};
use crate::shared::csv_cell::safe;
use crate::shared::money::{round_half_up, show};
use crate::shared::pdf;

/// What a run produced, ready to render.
pub struct Run<'a> {
    pub report: &'a Report,
    /// The columns the caller sees, with their index in a row.
    pub columns: Vec<(usize, &'static Column)>,
    /// The columns left out (their titles), for the PDF's note.
    pub hidden: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
    pub names: HashMap<(RefKind, Uuid), String>,
    /// The parameters as applied (defaults included), in order.
    pub parameters: Vec<(String, String)>,
    pub business: String,
    pub currency: String,
    pub scale: u32,
    pub generated_at: DateTime<Utc>,
    pub generated_by: String,
    /// The business timezone: the PDF shows times in it.
    pub timezone: chrono_tz::Tz,
}

impl Run<'_> {
    fn name(&self, kind: RefKind, cell: &Cell) -> String {
        match cell {
            Cell::Ref(id) => self
                .names
                .get(&(kind, *id))
                .cloned()
                .unwrap_or_else(|| id.to_string()),
            _ => names::none(kind).to_owned(),
        }
    }

    /// A cell as text (CSV, PDF); a `Ref` as its name.
    fn text(&self, column: &Column, cell: &Cell) -> String {
        match (column.kind, cell) {
            (ColumnKind::Ref(kind), _) => self.name(kind, cell),
            (_, Cell::Null) => String::new(),
            (_, Cell::Text(t)) => t.clone(),
            (_, Cell::Int(n)) => n.to_string(),
            (ColumnKind::Money, Cell::Dec(d)) => show(round_half_up(*d, self.scale), self.scale),
            (ColumnKind::Percent, Cell::Dec(d)) => show(round_half_up(*d, 1), 1),
            (_, Cell::Dec(d)) => quantity(*d),
            (_, Cell::Date(d)) => d.format("%Y-%m-%d").to_string(),
            (_, Cell::Time(t)) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
            (_, Cell::Ref(id)) => id.to_string(),
        }
    }

    /// A cell as the PDF prints it: times to the minute in the business timezone.
    fn printed(&self, column: &Column, cell: &Cell) -> String {
        match cell {
            Cell::Time(t) => t
                .with_timezone(&self.timezone)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            _ => self.text(column, cell),
        }
    }

    /// A cell as JSON: numbers of money, quantities and percentages as strings (as everywhere in
    /// the API), counts as numbers.
    fn json(&self, column: &Column, cell: &Cell) -> Value {
        match cell {
            Cell::Null if !matches!(column.kind, ColumnKind::Ref(_)) => Value::Null,
            Cell::Int(n) => json!(n),
            _ => Value::String(self.text(column, cell)),
        }
    }

    /// The sums of the summed columns (by row index).
    fn totals(&self) -> HashMap<usize, Cell> {
        let mut totals = HashMap::new();
        for (index, column) in &self.columns {
            if !column.total {
                continue;
            }
            let mut int = 0i64;
            let mut dec = Decimal::ZERO;
            let mut decimal = false;
            for row in &self.rows {
                match row.get(*index) {
                    Some(Cell::Int(n)) => int += n,
                    // The sum of what the rows show.
                    Some(Cell::Dec(d)) if column.kind == ColumnKind::Money => {
                        dec += round_half_up(*d, self.scale);
                        decimal = true;
                    }
                    Some(Cell::Dec(d)) => {
                        dec += d;
                        decimal = true;
                    }
                    _ => {}
                }
            }
            totals.insert(
                *index,
                if decimal {
                    Cell::Dec(dec + Decimal::from(int))
                } else {
                    Cell::Int(int)
                },
            );
        }
        totals
    }
}

/// `12.500` as `12.5`, `3.000` as `3`.
fn quantity(d: Decimal) -> String {
    d.round_dp(3).normalize().to_string()
}

fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Text => "text",
        ColumnKind::Integer => "integer",
        ColumnKind::Money => "money",
        ColumnKind::Quantity => "quantity",
        ColumnKind::Percent => "percent",
        ColumnKind::Date => "date",
        ColumnKind::Timestamp => "timestamp",
        ColumnKind::Ref(_) => "text",
    }
}

/// The columns as JSON and CSV name them: a `Ref` column is `<name>_id` and `<name>`.
pub fn column_descriptions(columns: &[(usize, &'static Column)]) -> Vec<Value> {
    let mut out = Vec::new();
    for (_, c) in columns {
        if let ColumnKind::Ref(_) = c.kind {
            out.push(json!({"name": format!("{}_id", c.name), "title": format!("{} id", c.title), "type": "id", "total": false}));
        }
        out.push(
            json!({"name": c.name, "title": c.title, "type": kind_name(c.kind), "total": c.total}),
        );
    }
    out
}

pub fn to_json(run: &Run<'_>) -> Value {
    let rows: Vec<Value> = run
        .rows
        .iter()
        .map(|row| {
            let mut object = Map::new();
            for (index, column) in &run.columns {
                let cell = row.get(*index).unwrap_or(&Cell::Null);
                if let ColumnKind::Ref(_) = column.kind {
                    let id = match cell {
                        Cell::Ref(id) => json!(id),
                        _ => Value::Null,
                    };
                    object.insert(format!("{}_id", column.name), id);
                }
                object.insert(column.name.to_owned(), run.json(column, cell));
            }
            Value::Object(object)
        })
        .collect();
    let totals = run.totals();
    let mut total_row = Map::new();
    for (index, column) in &run.columns {
        if let Some(cell) = totals.get(index) {
            total_row.insert(column.name.to_owned(), run.json(column, cell));
        }
    }
    let parameters: Map<String, Value> = run
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "report": {"id": run.report.id, "title": run.report.title},
        "parameters": parameters,
        "currency": run.currency,
        "columns": column_descriptions(&run.columns),
        "rows": rows,
        "totals": total_row,
        "generated_at": run.generated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}

/// One CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
fn field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_row(out: &mut String, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f);
    }
    out.push_str("\r\n");
}

pub fn to_csv(run: &Run<'_>) -> String {
    let mut out = String::new();
    let header: Vec<String> = column_descriptions(&run.columns)
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    csv_row(&mut out, &header);
    for row in &run.rows {
        let mut fields = Vec::new();
        for (index, column) in &run.columns {
            let cell = row.get(*index).unwrap_or(&Cell::Null);
            match column.kind {
                ColumnKind::Ref(_) => {
                    fields.push(match cell {
                        Cell::Ref(id) => id.to_string(),
                        _ => String::new(),
                    });
                    fields.push(safe(&run.text(column, cell)).into_owned());
                }
                ColumnKind::Text => fields.push(safe(&run.text(column, cell)).into_owned()),
                _ => fields.push(run.text(column, cell)),
            }
        }
        csv_row(&mut out, &fields);
    }
    out
}

/// Widths in mm for the PDF's columns on a `page` mm wide: numbers as wide as their longest
/// value, text sharing what is left (at least 14 mm each).
fn widths(
    run: &Run<'_>,
    cells: &[Vec<String>],
    totals: Option<&Vec<String>>,
    page: f32,
) -> Vec<f32> {
    // A column of the table's font, and a little more (so that a cell of exactly the column's
    // width is not cut by rounding).
    const CHAR: f32 = 8.5 * 0.602 * 25.4 / 72.0 * 1.02;
    let wants: Vec<usize> = run
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, c))| {
            let longest = cells
                .iter()
                .chain(totals)
                .map(|r| pdf::width(&r[i]))
                .max()
                .unwrap_or(0);
            longest.max(pdf::width(c.title)).max(6)
        })
        .collect();
    let is_text = |c: &Column| {
        matches!(
            c.kind,
            ColumnKind::Text | ColumnKind::Ref(_) | ColumnKind::Date
        )
    };
    let gaps = 2.0 * (run.columns.len().saturating_sub(1)) as f32;
    let fixed: f32 = run
        .columns
        .iter()
        .zip(&wants)
        .filter(|((_, c), _)| !is_text(c))
        .map(|(_, w)| *w as f32 * CHAR)
        .sum();
    let text_wants: f32 = run
        .columns
        .iter()
        .zip(&wants)
        .filter(|((_, c), _)| is_text(c))
        .map(|(_, w)| *w as f32 * CHAR)
        .sum();
    let left = (page - gaps - fixed).max(14.0);
    run.columns
        .iter()
        .zip(&wants)
        .map(|((_, c), w)| {
            let natural = *w as f32 * CHAR;
            if !is_text(c) || text_wants <= left {
                natural
            } else {
                (natural / text_wants * left).max(14.0)
            }
        })
        .collect()
}

/// The report's chart as the PDF draws it, when both its columns are shown.
fn chart_of(run: &Run<'_>, cells: &[Vec<String>]) -> Option<pdf::Chart> {
    let chart = run.report.chart?;
    let label = run
        .columns
        .iter()
        .position(|(_, c)| c.name == chart.label)?;
    let value = run
        .columns
        .iter()
        .position(|(_, c)| c.name == chart.value)?;
    let (_, label_column) = run.columns[label];
    let (_, value_column) = run.columns[value];
    let style = match (chart.kind, label_column.kind) {
        (ChartKind::Lines, _) => pdf::ChartStyle::Line,
        (ChartKind::Bars, ColumnKind::Ref(_)) => pdf::ChartStyle::Bars,
        (ChartKind::Bars, _) => pdf::ChartStyle::Columns,
    };
    let points = run
        .rows
        .iter()
        .zip(cells)
        .map(|(row, shown)| {
            let v = match row.get(run.columns[value].0) {
                Some(Cell::Dec(d)) => d.to_string().parse().unwrap_or(0.0),
                Some(Cell::Int(n)) => *n as f64,
                _ => 0.0,
            };
            (shown[label].clone(), v)
        })
        .collect();
    let top = if style == pdf::ChartStyle::Bars && run.rows.len() > pdf::MAX_BARS {
        format!(" (first {})", pdf::MAX_BARS)
    } else {
        String::new()
    };
    Some(pdf::Chart {
        title: format!(
            "{} by {}{top}",
            value_column.title,
            label_column.title.to_lowercase()
        ),
        style,
        points,
    })
}

pub fn to_pdf(run: &Run<'_>) -> Vec<u8> {
    let cells: Vec<Vec<String>> = run
        .rows
        .iter()
        .map(|row| {
            run.columns
                .iter()
                .map(|(index, column)| run.printed(column, row.get(*index).unwrap_or(&Cell::Null)))
                .collect()
        })
        .collect();
    let totals = run.totals();
    let total_cells: Option<Vec<String>> = (!totals.is_empty()).then(|| {
        run.columns
            .iter()
            .enumerate()
            .map(|(i, (index, column))| match totals.get(index) {
                Some(cell) => run.text(column, cell),
                None if i == 0 => "Total".to_owned(),
                None => String::new(),
            })
            .collect()
    });
    // Landscape when portrait cannot hold the table.
    let natural: f32 = widths(run, &cells, total_cells.as_ref(), f32::MAX)
        .iter()
        .map(|w| w + 2.0)
        .sum();
    let landscape = natural - 2.0 > pdf::usable_width(false);
    let widths = widths(
        run,
        &cells,
        total_cells.as_ref(),
        pdf::usable_width(landscape),
    );
    let columns: Vec<(&'static str, f32, bool)> = run
        .columns
        .iter()
        .zip(&widths)
        .map(|((_, c), w)| {
            let right = !matches!(
                c.kind,
                ColumnKind::Text | ColumnKind::Ref(_) | ColumnKind::Date
            );
            (c.title, *w, right)
        })
        .collect();
    let mut header = vec![run.business.clone()];
    header.push(
        run.parameters
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("   "),
    );
    header.push(format!(
        "Amounts in {}, times in {}. Generated {} by {}.",
        run.currency,
        run.timezone.name(),
        run.generated_at
            .with_timezone(&run.timezone)
            .format("%Y-%m-%d %H:%M"),
        run.generated_by
    ));
    if !run.hidden.is_empty() {
        header.push(format!(
            "Not shown (needs a permission you do not have): {}.",
            run.hidden.join(", ")
        ));
    }
    let chart = chart_of(run, &cells);
    pdf::render(&pdf::Report {
        title: run.report.title.to_owned(),
        header,
        chart,
        tables: vec![pdf::Table {
            title: format!("{} ({} rows)", run.report.title, run.rows.len()),
            columns,
            rows: cells,
            totals: total_cells,
        }],
        footer: format!(
            "{} - {} - generated {}",
            run.business,
            run.report.id,
            run.generated_at
                .with_timezone(&run.timezone)
                .format("%Y-%m-%d %H:%M %Z")
        ),
        landscape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_they_must_be() {
        let mut out = String::new();
        csv_row(
            &mut out,
            &[
                "a,b".into(),
                "say \"hi\"".into(),
                "plain".into(),
                "x\ny".into(),
            ],
        );
        assert_eq!(out, "\"a,b\",\"say \"\"hi\"\"\",plain,\"x\ny\"\r\n");
    }

    #[test]
    fn quantities_lose_their_trailing_zeros() {
        assert_eq!(quantity(Decimal::new(12500, 3)), "12.5");
        assert_eq!(quantity(Decimal::new(3000, 3)), "3");
    }
}
