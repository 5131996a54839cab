//! Runs a whole graph on the CPU reference.

use super::{run_op, Tensor};
use crate::graph::{GraphBuilder, GraphError, ParamStore};
use std::collections::HashMap;

/// Evaluates every op in order and returns the graph outputs, in the order marked.
pub fn run_graph(
    graph: &GraphBuilder,
    params: &ParamStore,
    input: &[f32],
) -> Result<Vec<Tensor>, GraphError> {
    let input_id = *graph.inputs().first().ok_or(GraphError::InputCount(0))?;
    let input_shape = graph.shape(input_id)?.to_vec();
    let expected = input_shape.iter().product::<usize>();
    if input.len() != expected {
        return Err(GraphError::InputLength {
            got: input.len(),
            expected,
            shape: input_shape,
        });
    }
    let mut values = HashMap::new();
    values.insert(input_id, Tensor::new(input_shape, input.to_vec()));
    for node in graph.nodes() {
        let mut node_params = Vec::new();
        for &p in &node.params {
            let name = &graph.params()[p].name;
            node_params.push(
                params
                    .get(name)
                    .ok_or_else(|| GraphError::UnknownParam(name.clone()))?,
            );
        }
        let x = values
            .get(&node.input)
            .ok_or(GraphError::UnknownTensor(node.input))?;
        let y = run_op(&node.kind, x, &node_params);
        values.insert(node.output, y);
    }
    graph
        .outputs()
        .iter()
        .map(|id| {
            values
                .get(id)
                .cloned()
                .ok_or(GraphError::UnknownTensor(*id))
        })
        .collect()
}
