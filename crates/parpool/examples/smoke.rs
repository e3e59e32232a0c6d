use parpool::ThreadPool;
fn main() {
    let pool = ThreadPool::new();
    for result in pool.imap(|n| n * 2, &[1, 2, 3, 4, 5]) {
        println!("{}", result);
    }
    let v: Vec<u64> = (0..1_000_000).collect();
    let t = std::time::Instant::now();
    let out = pool.map(|x| x * 2, &v);
    println!("map 1M: {:?} {}", t.elapsed(), out[999_999]);
    let t = std::time::Instant::now();
    let s: u64 = pool.imap(|x: u64| x * 2, 0..1_000_000u64).sum();
    println!("imap 1M: {:?} {}", t.elapsed(), s);
    let t = std::time::Instant::now();
    let hs: Vec<_> = (0..100_000)
        .map(|i| pool.apply_async(move || i + 1))
        .collect();
    let s: u64 = hs.into_iter().map(|h| h.get().unwrap()).sum();
    println!("apply_async 100k: {:?} {}", t.elapsed(), s);
    println!("{:?}", pool.stats());
}
