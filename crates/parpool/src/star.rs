//! `starmap` support: calling `f(a, b, ..)` with the fields of a tuple.
//!
//! [`Unpack`] turns an input item into an argument tuple: an owned tuple is
//! its own arguments, a borrowed tuple `&(A, B)` becomes `(&A, &B)`.
//! [`StarFn`] calls a function with such a tuple. Both are implemented for
//! tuples of 1 to 8 elements.

/// An input item that `starmap` spreads into function arguments.
///
/// ```
/// use parpool::Unpack;
/// assert_eq!((1, "a").unpack(), (1, "a"));
/// let pair = (2, 3);
/// assert_eq!((&pair).unpack(), (&2, &3));
/// ```
pub trait Unpack {
    /// The argument tuple.
    type Args;
    /// Spreads `self` into the argument tuple.
    fn unpack(self) -> Self::Args;
}

/// A function callable with the fields of the tuple `Args` as arguments.
///
/// ```
/// use parpool::StarFn;
/// let add = |a: i32, b: i32| a + b;
/// assert_eq!(add.call((2, 3)), 5);
/// ```
pub trait StarFn<Args> {
    /// What the function returns.
    type Output;
    /// Calls the function with the tuple's fields.
    fn call(&self, args: Args) -> Self::Output;
}

macro_rules! tuples {
    ($( ($($t:ident $v:ident),+) )*) => {$(
        impl<$($t),+> Unpack for ($($t,)+) {
            type Args = ($($t,)+);
            fn unpack(self) -> Self::Args {
                self
            }
        }

        impl<'a, $($t),+> Unpack for &'a ($($t,)+) {
            type Args = ($(&'a $t,)+);
            fn unpack(self) -> Self::Args {
                let ($($v,)+) = self;
                ($($v,)+)
            }
        }

        impl<Func, Ret, $($t),+> StarFn<($($t,)+)> for Func
        where
            Func: Fn($($t),+) -> Ret,
        {
            type Output = Ret;
            fn call(&self, ($($v,)+): ($($t,)+)) -> Ret {
                self($($v),+)
            }
        }
    )*};
}

tuples! {
    (A a)
    (A a, B b)
    (A a, B b, C c)
    (A a, B b, C c, D d)
    (A a, B b, C c, D d, E e)
    (A a, B b, C c, D d, E e, F f)
    (A a, B b, C c, D d, E e, F f, G g)
    (A a, B b, C c, D d, E e, F f, G g, H h)
}
