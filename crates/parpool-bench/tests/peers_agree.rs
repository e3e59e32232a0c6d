//! Every peer must compute exactly what sequential code computes, in the
//! same order, or its timings mean nothing. Small inputs: this runs fast.

use parpool_bench::peers::{self, Peers};
use parpool_bench::work::{skewed, spin, tiny};
use std::sync::Arc;

fn check(p: &Peers, n: u64, f: impl parpool_bench::work::Body) {
    let input = Arc::new((0..n).collect::<Vec<u64>>());
    let want = peers::sequential(&input, f);
    assert_eq!(
        peers::rayon_collect(&input, f),
        want,
        "rayon collect, n={n}"
    );
    assert_eq!(peers::rayon_range_collect(n, f), want, "rayon range, n={n}");
    assert_eq!(
        peers::rayon_scope_spawn(&input, f, p.chunks),
        want,
        "rayon scope, n={n}"
    );
    assert_eq!(
        peers::threadpool_execute_join(p, &input, f),
        want,
        "threadpool, n={n}"
    );
    assert_eq!(peers::article_design(p, &input, f), want, "article, n={n}");
    assert_eq!(
        peers::std_scope(&input, f, p.workers),
        want,
        "std scope, n={n}"
    );
    assert_eq!(peers::tokio_buffered(p, &input, f), want, "tokio, n={n}");
    assert_eq!(peers::poolio_execute(p, &input, f), want, "poolio, n={n}");
}

#[test]
fn peers_match_sequential() {
    let p = Peers::new(2);
    for n in [0, 1, 7, 1000] {
        check(&p, n, tiny);
        check(&p, n, |x| spin(x, 10));
        check(&p, n, |x| skewed(x, 3, 5));
    }
}

#[test]
fn w4_with_results_returns_every_result_in_order() {
    let p = Peers::new(2);
    let want: Vec<u64> = (0..500).map(tiny).collect();
    assert_eq!(peers::w4_threadpool_with_results(&p, 500), want);
    assert_eq!(peers::w4_tokio_buffered(&p, 500), want);
    assert_eq!(peers::w4_poolio_with_results(&p, 500), want);
}
