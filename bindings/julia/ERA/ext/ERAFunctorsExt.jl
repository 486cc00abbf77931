# Heads are leaves for Functors: Flux's gpu/cpu/f32/f64, Optimisers.setup and fmap pass a
# head through unchanged instead of rebuilding it from its fields. Functors 0.5 walks every
# struct it meets and would rebuild a head from its raw handle (a second owner with a
# second finalizer: a double free); Functors 0.4 walks only marked structs, and the rule
# costs nothing there.
module ERAFunctorsExt

using ERA: ERA, AbstractHead
using Functors: Functors

# Functors 0.5 marks a leaf with NoChildren(); 0.4 with an empty tuple of children.
const _NO_CHILDREN = isdefined(Functors, :NoChildren) ? Functors.NoChildren() : ()

Functors.functor(::Type{<:AbstractHead}, h) = _NO_CHILDREN, _ -> h

end # module
