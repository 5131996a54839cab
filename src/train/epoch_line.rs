//! The one-line report printed after each epoch.

use super::epoch_metrics::EpochMetrics;

/// The one-line epoch report printed after each epoch, Lightning-style, e.g.
/// "epoch 3/10  lr 0.0450  train loss 0.4123 acc 85.12%  val loss 0.3977 acc 86.00%  test loss 0.4011 acc 85.70%  41.2 s  1456 img/s"
///
/// Missing validation or test values are left out.
pub fn format_epoch_line(m: &EpochMetrics, total_epochs: usize) -> String {
    let mut line = format!("epoch {}/{}  lr {}", m.epoch, total_epochs, format_lr(m.lr));
    for (split, loss, acc) in [
        ("train", Some(m.train_loss), Some(m.train_acc)),
        ("val", m.val_loss, m.val_acc),
        ("test", m.test_loss, m.test_acc),
    ] {
        if loss.is_none() && acc.is_none() {
            continue;
        }
        line.push_str("  ");
        line.push_str(split);
        if let Some(loss) = loss {
            line.push_str(&format!(" loss {loss:.4}"));
        }
        if let Some(acc) = acc {
            line.push_str(&format!(" acc {:.2}%", acc * 100.0));
        }
    }
    line.push_str(&format!(
        "  {:.1} s  {:.0} img/s",
        m.seconds, m.images_per_sec
    ));
    if m.ranks > 1 {
        line.push_str(&format!(
            "  global batch {} ({} ranks)",
            m.global_batch, m.ranks
        ));
    }
    if m.bad_files > 0 {
        line.push_str(&format!("  {} bad files skipped", m.bad_files));
    }
    line
}

/// Four decimals hide small learning rates (1e-5 would print as 0.0000), so those go
/// scientific.
fn format_lr(lr: f64) -> String {
    if lr == 0.0 || lr.abs() >= 1e-3 {
        format!("{lr:.4}")
    } else {
        format!("{lr:.2e}")
    }
}
