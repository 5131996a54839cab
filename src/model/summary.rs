//! The layer table users know from Keras `model.summary()` and torchsummary.

use crate::graph::GraphBuilder;
use std::fmt;

#[derive(Clone, Debug, serde::Serialize)]
pub struct SummaryRow {
    pub name: String,
    pub kind: &'static str,
    /// Output shape without the batch dimension.
    pub output_shape: Vec<usize>,
    pub params: u64,
    pub mult_adds: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    pub rows: Vec<SummaryRow>,
    pub total_params: u64,
    pub trainable_params: u64,
    pub non_trainable_params: u64,
    /// Per image: convolutions and the classifier, as the paper counts them.
    pub mult_adds: u64,
}

impl Summary {
    /// Mult-adds per image of the layers of one type (e.g. "PointwiseConv2d").
    pub fn mult_adds_of(&self, kind: &str) -> u64 {
        self.rows
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.mult_adds)
            .sum()
    }

    /// Summarises a graph per image (costs are divided by the graph's batch size).
    pub fn of(graph: &GraphBuilder) -> Summary {
        let batch = graph
            .inputs()
            .first()
            .and_then(|&i| graph.shape(i).ok())
            .map(|s| s[0].max(1) as u64)
            .unwrap_or(1);
        let mut rows = Vec::new();
        let (mut trainable, mut frozen) = (0u64, 0u64);
        for node in graph.nodes() {
            let (input, output) = match (graph.shape(node.input), graph.shape(node.output)) {
                (Ok(i), Ok(o)) => (i, o),
                _ => continue,
            };
            let mut params = 0u64;
            for &p in &node.params {
                let info = &graph.params()[p];
                let n = info.len() as u64;
                params += n;
                if info.role.trainable() {
                    trainable += n;
                } else {
                    frozen += n;
                }
            }
            rows.push(SummaryRow {
                name: node.name.clone(),
                kind: node.kind.type_name(),
                output_shape: output[1..].to_vec(),
                params,
                mult_adds: node.kind.mult_adds(input, output) / batch,
            });
        }
        Summary {
            mult_adds: rows.iter().map(|r| r.mult_adds).sum(),
            total_params: trainable + frozen,
            trainable_params: trainable,
            non_trainable_params: frozen,
            rows,
        }
    }
}

/// Groups thousands with commas: 4231976 -> "4,231,976".
pub fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = "-".repeat(96);
        writeln!(
            f,
            "{:<22} {:<18} {:<20} {:>14} {:>16}",
            "Layer", "Type", "Output shape", "Params", "Mult-adds"
        )?;
        writeln!(f, "{rule}")?;
        for row in &self.rows {
            let shape = format!(
                "({})",
                row.output_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            writeln!(
                f,
                "{:<22} {:<18} {:<20} {:>14} {:>16}",
                row.name,
                row.kind,
                shape,
                with_commas(row.params),
                with_commas(row.mult_adds)
            )?;
        }
        writeln!(f, "{rule}")?;
        writeln!(
            f,
            "Total params:         {}",
            with_commas(self.total_params)
        )?;
        writeln!(
            f,
            "Trainable params:     {}",
            with_commas(self.trainable_params)
        )?;
        writeln!(
            f,
            "Non-trainable params: {} (BN running statistics)",
            with_commas(self.non_trainable_params)
        )?;
        writeln!(
            f,
            "Mult-adds per image:  {} ({:.1}M; convolutions and classifier, as the paper counts)",
            with_commas(self.mult_adds),
            self.mult_adds as f64 / 1e6
        )
    }
}
