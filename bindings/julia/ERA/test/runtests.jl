# Tests of ERA against the era library (docs/math.md's worked examples, finite
# differences, the entropy floors, JSON, errors, layouts). Needs the library: ERA_jll, the
# `libera` preference (deps/build_local.jl) or ERA_LIBRARY.
using ERA
# the generic names are not exported (they would clash with StatsBase/Distributions): import them
using ERA: forward, forward!, backward, entropy, delta, config
using Test
using Random
using Serialization: serialize, deserialize

# Optional: the ChainRulesCore extension's rules and a Flux policy (test/chainrules.jl).
# Imported here, at top level, so that the extension's methods exist for later statements.
const HAVE_CHAINRULES = Base.find_package("ChainRulesCore") !== nothing
const HAVE_FLUX = Base.find_package("Flux") !== nothing
const HAVE_FUNCTORS = Base.find_package("Functors") !== nothing
HAVE_CHAINRULES && @eval import ChainRulesCore
HAVE_FLUX && @eval import Flux
HAVE_FUNCTORS && @eval import Functors

# An array type whose memory ERA cannot know to be on the host (as a GPU package's arrays):
# dense, strided, and still refused.
struct NotHostArray{T,N} <: DenseArray{T,N}
    data::Array{T,N}
end
Base.size(a::NotHostArray) = size(a.data)
Base.getindex(a::NotHostArray, i::Int...) = getindex(a.data, i...)
Base.strides(a::NotHostArray) = strides(a.data)
Base.pointer(a::NotHostArray) = pointer(a.data)

isempty(ERA.library_path()) && error("ERA tests: no era library found; run deps/build_local.jl or set ERA_LIBRARY")

# central differences of x -> sum(g .* f(x)), in Float64
function numgrad(f, x::AbstractArray{Float64}, g; h = 1e-6)
    dx = similar(x)
    for i in eachindex(x)
        xp = copy(x); xp[i] += h
        xm = copy(x); xm[i] -= h
        dx[i] = (sum(g .* f(xp)) - sum(g .* f(xm))) / (2h)
    end
    return dx
end

@testset "ERA" begin
    @testset "library" begin
        @test ERA.abi_version() == ERA.ERA_ABI_VERSION
        @test ERA.version() isa VersionNumber
        @test sizeof(ERA.EraConfig) == ERA.ERA_CONFIG_SIZE
        @test ERA.check_layout() === nothing
        @test ERA.status_name(ERA.ERA_STATUS_JSON) == "ERA_STATUS_JSON"
        @test ERA.STATUS_NAMES[ERA.ERA_STATUS_INTERNAL] == "ERA_STATUS_INTERNAL"
        cfg = ERA.default_config(ERA.ERA_HEAD_KIND_GAUSSIAN)
        @test cfg.struct_size == ERA.ERA_CONFIG_SIZE
        @test isnan(cfg.target_entropy) && cfg.dim == 0
        @test cfg.reserved0 == 0 && cfg.reserved1 == 0 && cfg.reserved2 == 0
    end

    @testset "Gaussian worked example" begin
        h = GaussianHead(dim = 3, target_entropy = -1.5, log_std_min = -5, log_std_max = 0)
        z = [0.5, -1.0, 2.0]
        out = h(z)
        @test out ≈ [-1.009114, -0.225164, -4.522537] atol = 1e-6
        @test sum(out) + 1.5 * ERA.ERA_LN_2PI_E ≈ -1.5 atol = 1e-12
        @test entropy(h, out) ≈ -1.5 atol = 1e-12
        @test gaussian_entropy(out) ≈ -1.5 atol = 1e-12
        g = [1.0, 2.0, -1.0]
        @test backward(h, z, g) ≈ [-1.546046, -0.570133, 2.116179] atol = 1e-6
        dz, dd = backward(h, z, 0.0, g)
        @test dz ≈ [-1.546046, -0.570133, 2.116179] atol = 1e-6
        @test dd ≈ -0.532081 atol = 1e-6
        @test forward(h, z, 0.0) ≈ out
        @test delta(h) == 0.0
        c = config(h)
        @test c.dim == 3 && c.log_std_min == -5.0
        # Float32 and in-place
        z32 = Float32.(z)
        @test forward(h, z32) ≈ Float32.(out) atol = 1e-5
        zz = copy(z)
        forward!(zz, h, zz)
        @test zz ≈ out
    end

    @testset "masked Gaussian head" begin
        h = GaussianHead(dim = 3, target_entropy = -1.5, log_std_min = -5, log_std_max = 0)
        # column 1 all active (the worked example), column 2 only its middle entry (a = 1 of 3)
        z = [0.5 0.5; -1.0 -1.0; 2.0 2.0]
        m = [1.0 0.0; 1.0 1.0; 1.0 0.0]
        g = [1.0 1.0; 2.0 2.0; -1.0 -1.0]
        out = ERA.forward_masked(h, z, m, 0.0; fill = 7.0)
        @test out[:, 1] ≈ [-1.009114, -0.225164, -4.522537] atol = 1e-6
        @test out[:, 2] ≈ [7.0, -1.5 / 3 - 0.5 * ERA.ERA_LN_2PI_E, 7.0] atol = 1e-12
        dz, dd = ERA.backward_masked(h, z, m, [0.0, 0.0], g; fill = 7.0)
        @test dz[:, 1] ≈ [-1.546046, -0.570133, 2.116179] atol = 1e-6
        @test dz[:, 2] == [0.0, 0.0, 0.0]
        @test dd ≈ [-0.532081, 2 / 3] atol = 1e-6
        @test ERA.forward_masked(h, z, m, 0.0)[[1, 3], 2] == z[[1, 3], 2]   # pass-through
        @test ERA.forward_masked(h, z, ones(3, 2), 0.0) == forward(h, z, 0.0)
        @test_throws ERAError ERA.forward_masked(h, z, fill(0.5, 3, 2), 0.0)
    end

    @testset "saved softmax: the same results from softmax(z)" begin
        rng = MersenneTwister(11)
        for T in (Float64, Float32)
            h = GaussianHead(dim = 6, target_entropy = -3.0, log_std_min = -5, log_std_max = 0)
            z = T.(2 .* randn(rng, 6, 37))
            g = T.(randn(rng, 6, 37))
            p = exp.(z .- maximum(z; dims = 1))
            p ./= sum(p; dims = 1)
            set_delta!(h, 0.4)
            out, saved = ERA.forward_saved(h, z)
            @test out == forward(h, z)                     # the same bits
            @test saved ≈ p rtol = (T == Float64 ? 1e-13 : 1e-5)
            @test ERA.backward_saved(h, saved, g) == backward(h, z, g)
            # a delta operand: one for all columns, one per column
            for d in (T(0.3), T.(0.1 .* (0:36) .% 0.5 .- 0.2))
                out, saved = ERA.forward_saved(h, z, d)
                @test out == forward(h, z, d)
                dz, dd = ERA.backward_saved(h, saved, d, g)
                dz0, dd0 = backward(h, z, d, g)
                @test dz == dz0 && dd == dd0
            end
            # in place: saved over z, grad_z over saved
            zz = copy(z)
            o2 = similar(z)
            ERA.forward_saved!(o2, zz, h, zz)
            @test o2 == forward(h, z) && zz == saved
            @test ERA.backward_saved!(zz, h, zz, g) == backward(h, z, g)
            # a strided (transposed) input
            zt = permutedims(z)
            @test ERA.forward_saved(h, PermutedDimsArray(zt, (2, 1)))[1] == forward(h, PermutedDimsArray(zt, (2, 1)))

            s = SoftmaxHead(num_classes = 7, target_entropy = 1.1, tau = 5)
            zs = T.(2 .* randn(rng, 7, 37))
            gs = T.(randn(rng, 7, 37))
            out, saved = ERA.forward_saved(s, zs)
            @test out == forward(s, zs)
            ps = exp.(zs .- maximum(zs; dims = 1))
            ps ./= sum(ps; dims = 1)
            @test saved ≈ ps rtol = (T == Float64 ? 1e-13 : 1e-5)
            dz = ERA.backward_saved(s, saved, gs)
            # the same bits on the vectorised Float32 kernels, equal to rounding in Float64
            if T == Float32
                @test dz == backward(s, zs, gs)
            else
                @test dz ≈ backward(s, zs, gs) rtol = 1e-12
            end
            # with the second residual dw/dh: backward_saved's bits
            o3, s3, q3 = ERA.forward_saved_dw!(similar(zs), similar(zs), similar(zs), s, zs)
            @test o3 == out && s3 == saved
            @test ERA.backward_saved_dw!(similar(zs), s, s3, q3, gs) == dz
            @test_throws ERAError ERA.forward_saved_dw!(o3, s3, s3, s, zs)

            # errors: out and saved overlap, a wrong size, host memory only
            @test_throws ERAError ERA.forward_saved!(o2, o2, h, z)
            @test_throws ERAError ERA.forward_saved(s, z)
            @test_throws ERAError ERA.forward_saved(h, z, T(NaN))
            @test_throws ERAError ERA.forward_saved(h, z, T(100))
            @test_throws ArgumentError ERA.forward_saved(h, NotHostArray(z))
        end
    end

    @testset "softmax worked example" begin
        h = SoftmaxHead(num_classes = 4, target_entropy = 0.6, tau = 4)
        z = [2.0, 0.0, -1.0, 0.5]
        out = h(z)
        @test out ≈ [1.41745, 0.167547, 0.0, 0.325278] atol = 1e-5
        @test softmax_entropy(out) ≈ 1.195788 atol = 1e-6
        @test entropy(h, out) ≈ 1.195788 atol = 1e-6
        @test backward(h, z, [1.0, -0.5, 0.25, 0.0]) ≈ [0.440352, -0.239131, -0.015823, -0.185398] atol = 1e-6
    end

    @testset "finite differences (Float64)" begin
        rng = MersenneTwister(1)
        gh = GaussianHead(dim = 5, target_entropy = -3.0, log_std_min = -10, log_std_max = 2)
        sh = SoftmaxHead(num_classes = 6, target_entropy = 1.0)
        for (h, D) in ((gh, 5), (sh, 6))
            z = randn(rng, D, 7)
            g = randn(rng, D, 7)
            @test backward(h, z, g) ≈ numgrad(x -> forward(h, x), z, g) atol = 1e-6 rtol = 1e-5
        end
        # d/d delta, one value per column
        z = randn(rng, 5, 4)
        d = fill(0.3, 4)
        g = randn(rng, 5, 4)
        dz, dd = backward(gh, z, d, g)
        @test dz ≈ numgrad(x -> forward(gh, x, d), z, g) atol = 1e-6 rtol = 1e-5
        @test dd ≈ numgrad(x -> forward(gh, z, x), d, g) atol = 1e-6 rtol = 1e-5
        # a scalar delta: the sum over all columns
        dz, ds = backward(gh, z, 0.3, g)
        @test ds ≈ sum(dd) atol = 1e-10
    end

    @testset "entropy floors" begin
        rng = MersenneTwister(2)
        for D in (1, 2, 6), H0 in (-2.0 * D, -0.5 * D)
            h = GaussianHead(dim = D, target_entropy = H0)
            z = 10 .* randn(rng, D, 200)
            @test all(entropy(h, h(z)) .>= H0 - 1e-9)
        end
        for n in (2, 10, 100), H0 in (0.1, 0.5)
            h = SoftmaxHead(num_classes = n, target_entropy = H0)
            z = 20 .* randn(rng, n, 200)
            @test all(softmax_entropy(h(z)) .>= H0)
        end
    end

    @testset "column-major and strided inputs" begin
        rng = MersenneTwister(3)
        h = SoftmaxHead(num_classes = 4, target_entropy = 0.6)
        Z = randn(rng, 4, 5)                    # (D, B): era's [B, D], no copy
        cols = reduce(hcat, [h(Z[:, j]) for j in 1:5])
        @test h(Z) ≈ cols
        @test h(view(Z, :, 2:4)) ≈ cols[:, 2:4]            # a strided view
        big = randn(rng, 8, 5)
        @test h(view(big, 1:2:8, :)) ≈ reduce(hcat, [h(big[1:2:8, j]) for j in 1:5])   # stride 2 within a row
        P = PermutedDimsArray(permutedims(Z), (2, 1))       # the same values, transposed memory
        @test h(P) ≈ cols
        @test backward(h, P, ones(4, 5)) ≈ backward(h, Z, ones(4, 5))
        Z3 = randn(rng, 4, 3, 2)                 # (D, b1, b2)
        @test h(Z3) ≈ reshape(h(reshape(Z3, 4, 6)), 4, 3, 2)
        @test size(entropy(h, h(Z3))) == (3, 2)

    end

    @testset "delta learner" begin
        h = GaussianHead(dim = 2, target_entropy = -2.0, delta_optimizer = :sgd, delta_lr = 0.1)
        @test set_delta!(h, 0.5) == 0.5
        @test update_delta!(h, -1.0) ≈ 0.5 - 0.1 * (-1.0 - -2.0)
        @test delta(h) ≈ 0.4
        big = set_delta!(h, 1e6)                 # clamped feasible
        @test big <= 2 * (0.0 + 0.5 * ERA.ERA_LN_2PI_E) + 2.0 + 1e-9
        fixed = GaussianHead(dim = 2, target_entropy = -2.0, delta_optimizer = :fixed)
        @test update_delta!(fixed, 5.0) == 0.0
    end

    @testset "JSON" begin
        h = GaussianHead(dim = 3, target_entropy = -1.5, log_std_min = -5, log_std_max = 0, delta = 0.25)
        update_delta!(h, -1.0)
        s = to_json(h)
        h2 = from_json(s)
        @test h2 isa GaussianHead
        @test delta(h2) == delta(h)
        @test to_json(h2) == s
        z = randn(3, 4)
        @test h2(z) == h(z)
        sm = from_json("""{"kind": "softmax", "num_classes": 10, "target_entropy": 1.0}""")
        @test sm isa SoftmaxHead && Int(config(sm).num_classes) == 10
        @test from_json(to_json(TokenHead())) isa TokenHead
        @test copy(sm) isa SoftmaxHead
        close(sm)
        @test_throws ArgumentError to_json(sm)
    end

    @testset "ownership: copies, deepcopy, serialisation, rebuilding" begin
        h = GaussianHead(dim = 2, target_entropy = -2.0, delta_optimizer = :sgd, delta_lr = 0.1)
        set_delta!(h, 0.5)
        # no positional raw-handle constructor: rebuilding from the fields cannot make a second owner
        @test_throws MethodError GaussianHead(h.ptr)
        @test_throws MethodError SoftmaxHead(h.ptr)
        @test_throws MethodError TokenHead(h.ptr)
        # deepcopy goes through the library: a new handle, the same state, nothing shared
        d = deepcopy(h)
        @test d isa GaussianHead && d.ptr != h.ptr && d.ptr != C_NULL
        @test delta(d) == delta(h) && to_json(d) == to_json(h)
        update_delta!(d, -1.0)
        @test delta(h) == 0.5 && delta(d) ≈ 0.4
        pair = deepcopy((h, h))                  # one copy per head within one deepcopy
        @test pair[1] === pair[2] && pair[1] !== h
        close(d)
        @test delta(h) == 0.5                    # closing the copy leaves the original alone
        # Serialization stores the JSON state, not the pointer
        io = IOBuffer()
        serialize(io, (h, SoftmaxHead(num_classes = 3, target_entropy = 0.5)))
        h2, s2 = deserialize(seekstart(io))
        @test h2 isa GaussianHead && h2.ptr != h.ptr && to_json(h2) == to_json(h)
        @test s2 isa SoftmaxHead && Int(config(s2).num_classes) == 3
        @test convert(GaussianHead, convert(ERA.HeadState, h)) isa GaussianHead
        if HAVE_FUNCTORS
            # a leaf: fmap passes the same head through, never rebuilding it from its handle
            m = (w = [1.0, 2.0], head = h)
            m2 = Functors.fmap(x -> x isa AbstractArray ? 2 .* x : x, m)
            @test m2.head === h && m2.w == [2.0, 4.0]
            @test Functors.isleaf(h)
        end
    end

    @testset "host memory only" begin
        @test ERA.ishost(zeros(2, 2)) && ERA.ishost(view(zeros(4, 4), 1:2:4, :))
        @test ERA.ishost(PermutedDimsArray(zeros(2, 3), (2, 1))) && ERA.ishost(reshape(view(zeros(6), 1:6), 2, 3))
        a = NotHostArray(zeros(4, 2))
        @test !ERA.ishost(a)
        h = SoftmaxHead(num_classes = 4, target_entropy = 0.6)
        @test_throws ArgumentError h(a)
        @test occursin("host memory", sprint(showerror, try h(a) catch err; err end))
        @test_throws ArgumentError h(view(a, :, 1:2))
    end

    @testset "exports do not clash" begin
        for name in (:entropy, :delta, :forward, :backward, :config)
            @test !(name in names(ERA))          # not exported; ERA.$name works
            @test isdefined(ERA, name)
        end
    end

    @testset "errors" begin
        e = try
            GaussianHead(dim = 3)               # target_entropy left NaN
        catch err
            err
        end
        @test e isa ERAError
        @test e.status == ERA.ERA_STATUS_INVALID_CONFIG && e.name == "ERA_STATUS_INVALID_CONFIG"
        @test !isempty(e.message) && e.context == "era_head_new"
        @test occursin("ERA_STATUS_INVALID_CONFIG", sprint(showerror, e))
        e = try
            GaussianHead(dim = 2, target_entropy = 100.0)
        catch err
            err
        end
        @test e isa ERAError && e.status == ERA.ERA_STATUS_INFEASIBLE_TARGET
        e = try
            from_json("{not json")
        catch err
            err
        end
        @test e isa ERAError && e.status == ERA.ERA_STATUS_JSON
        h = SoftmaxHead(num_classes = 4, target_entropy = 0.6)
        e = try
            h(zeros(3, 2))                     # wrong class count
        catch err
            err
        end
        @test e isa ERAError && e.status == ERA.ERA_STATUS_INVALID_SHAPE && !isempty(e.message)
        @test_throws MethodError delta(h)        # delta is a method of GaussianHead only
        e = try
            ERA.check(ERA.era_head_delta(h, Ref{Cdouble}(0)), "era_head_delta")
        catch err
            err
        end
        @test e isa ERAError && e.status == ERA.ERA_STATUS_WRONG_HEAD_KIND
        e = try
            h(zeros(Int64, 4))
        catch err
            err
        end
        @test e isa ERAError && e.status == ERA.ERA_STATUS_UNSUPPORTED_DTYPE
        e = try
            truncated_normal_entropy([0.0], [0.0], 1.0, -1.0)
        catch err
            err
        end
        @test e isa ERAError && e.status == ERA.ERA_STATUS_INVALID_ARGUMENT
        @test_throws ArgumentError GaussianHead(dim = 3, target_entropy = -1.0, no_such_field = 1)
        @test_throws ArgumentError GaussianHead(dim = 3, target_entropy = -1.0, reserved0 = 1)
        @test_throws ArgumentError GaussianHead(dim = 3, target_entropy = -1.0, delta_optimizer = :newton)
        @test_throws ArgumentError h(1.0:4.0)  # a range has no memory
        @test occursin("strided", sprint(showerror, try h(1.0:4.0) catch err; err end))
    end

    @testset "token head" begin
        rng = MersenneTwister(4)
        V, N = 7, 6
        h = TokenHead(temperature = 1.0)
        logits = randn(rng, V, N)
        labels = Int64[0, 3, 6, 1, 2, 5]           # 0-based token ids
        rids = Int64[0, 0, 0, 1, 1, -1]
        adv = randn(rng, N)
        r = token_forward(h, logits, labels, rids, adv)
        @test size(r.logprobs) == (N,) && r.logprobs[6] == 0.0 && r.scale[6] == 1.0
        @test r.entropy[1:5] ≈ [softmax_entropy(logits[:, j]) for j in 1:5]
        @test entropy(h, logits) ≈ [softmax_entropy(logits[:, j]) for j in 1:N]
        only_lp = token_forward(h, logits, labels, rids, adv; outputs = (:logprobs,))
        @test only_lp.logprobs == r.logprobs && only_lp.scale === nothing
        g = randn(rng, N)
        gl = token_backward(h, logits, labels, rids, r.scale, g)
        f(x) = token_forward(h, x, labels, rids, adv; outputs = (:logprobs, :scale)).logprobs
        @test gl ≈ numgrad(f, logits, g) atol = 1e-6 rtol = 1e-5   # the scales stay put for small steps
        e = try
            token_forward(h, logits, Int64[0, 3, 7, 1, 2, 5], rids, adv)
        catch err
            err
        end
        @test e isa ERAError && e.status == ERA.ERA_STATUS_INVALID_VALUE
    end

    @testset "head-free entropies" begin
        @test gaussian_entropy(zeros(2, 3)) ≈ fill(ERA.ERA_LN_2PI_E, 3)
        @test softmax_entropy(zeros(4)) ≈ log(4)
        @test softmax_entropy([1.0, 0.0]; temperature = 1e-3) < 1e-6
        @test truncated_normal_entropy([0.0], [0.0], -Inf, Inf) ≈ 0.5 * ERA.ERA_LN_2PI_E
        @test truncated_normal_entropy([0.0], [0.0], -1.0, 1.0) < 0.5 * ERA.ERA_LN_2PI_E
    end

    include("chainrules.jl")
end
