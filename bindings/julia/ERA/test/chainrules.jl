# Reverse-mode rules (ChainRulesCore extension) and a Flux policy through GaussianHead;
# skipped when those packages are not in the environment.

if HAVE_CHAINRULES
    @testset "rrules" begin
        h = GaussianHead(dim = 3, target_entropy = -1.5, log_std_min = -5, log_std_max = 0)
        z = [0.5, -1.0, 2.0]
        g = [1.0, 2.0, -1.0]
        y, back = ChainRulesCore.rrule(forward, h, z)
        @test y ≈ h(z)
        @test back(g)[3] ≈ [-1.546046, -0.570133, 2.116179] atol = 1e-6
        y, back = ChainRulesCore.rrule(forward, h, z, 0.0)
        _, _, dz, dd = back(g)
        @test dd ≈ -0.532081 atol = 1e-6
        y, back = ChainRulesCore.rrule(h, z)
        @test back(g)[2] ≈ dz
        @test back(ChainRulesCore.ZeroTangent())[2] isa ChainRulesCore.AbstractZero
        # host arrays take the saved-softmax path: the same bits as the backward from z
        rng = MersenneTwister(12)
        zb = randn(rng, 3, 20)
        gb = randn(rng, 3, 20)
        y, back = ChainRulesCore.rrule(forward, h, zb)
        @test y == forward(h, zb)
        @test back(gb)[3] == backward(h, zb, gb)
        y, back = ChainRulesCore.rrule(forward, h, zb, 0.25)
        _, _, dz, dd = back(gb)
        @test (dz, dd) == backward(h, zb, 0.25, gb)
        sh = SoftmaxHead(num_classes = 3, target_entropy = 0.5)
        y, back = ChainRulesCore.rrule(sh, Float32.(zb))
        @test y == forward(sh, Float32.(zb))
        @test back(Float32.(gb))[2] == backward(sh, Float32.(zb), Float32.(gb))
        # a lazy cotangent
        @test back(fill(1.0f0, 3, 20))[2] ≈ backward(sh, Float32.(zb), ones(Float32, 3, 20))
    end

    @testset "entropy rrules (finite differences)" begin
        rng = MersenneTwister(5)
        x = randn(rng, 5, 4)
        g = randn(rng, 4)
        e, back = ChainRulesCore.rrule(softmax_entropy, x)
        @test e ≈ softmax_entropy(x)
        @test back(g)[2] ≈ numgrad(softmax_entropy, x, g) atol = 1e-6 rtol = 1e-5
        e, back = ChainRulesCore.rrule(softmax_entropy, x; temperature = 0.7)
        @test back(g)[2] ≈ numgrad(y -> softmax_entropy(y; temperature = 0.7), x, g) atol = 1e-6 rtol = 1e-5
        e, back = ChainRulesCore.rrule(gaussian_entropy, x)
        @test back(g)[2] ≈ numgrad(gaussian_entropy, x, g) atol = 1e-6 rtol = 1e-5
        sh = SoftmaxHead(num_classes = 5, target_entropy = 0.5)
        e, back = ChainRulesCore.rrule(entropy, sh, x)
        @test back(g)[3] ≈ numgrad(y -> entropy(sh, y), x, g) atol = 1e-6 rtol = 1e-5
        th = TokenHead(temperature = 1.3)
        e, back = ChainRulesCore.rrule(entropy, th, x)
        @test back(g)[3] ≈ numgrad(y -> entropy(th, y), x, g) atol = 1e-6 rtol = 1e-5
        gh = GaussianHead(dim = 5, target_entropy = -3.0)
        e, back = ChainRulesCore.rrule(entropy, gh, x)
        @test back(g)[3] ≈ numgrad(y -> entropy(gh, y), x, g) atol = 1e-6 rtol = 1e-5
        # a vector gives a number, and a number cotangent
        e, back = ChainRulesCore.rrule(softmax_entropy, x[:, 1])
        @test back(2.0)[2] ≈ numgrad(y -> [softmax_entropy(y)], x[:, 1], [2.0]) atol = 1e-6 rtol = 1e-5
        # no derivative in the library: an error, never a silent zero
        e, back = ChainRulesCore.rrule(truncated_normal_entropy, x, x, -1.0, 1.0)
        @test_throws ErrorException back(g)
        @test back(ChainRulesCore.ZeroTangent())[2] isa ChainRulesCore.AbstractZero
    end

    @testset "token rrule: logprobs, entropy and advantages cotangents" begin
        rng = MersenneTwister(6)
        V, N = 7, 6
        h = TokenHead(temperature = 0.9, advantage_scaling = 1)
        logits = randn(rng, V, N)
        labels = Int64[0, 3, 6, 1, 2, 5]
        rids = Int64[0, 0, 0, 1, 1, -1]
        adv = randn(rng, N)
        y, back = ChainRulesCore.rrule(token_forward, h, logits, labels, rids, adv)
        glp, gH, gA = randn(rng, N), randn(rng, N), randn(rng, N)
        ȳ = ChainRulesCore.Tangent{typeof(y)}(; logprobs = glp, entropy = gH, advantages = gA)
        grads = back(ȳ)
        f(x) = (r = token_forward(h, x, labels, rids, adv); vcat(r.logprobs, r.entropy))
        @test grads[3] ≈ numgrad(f, logits, vcat(glp, gH)) atol = 1e-6 rtol = 1e-5
        @test grads[6] ≈ gA ./ y.scale                      # A / c with advantage scaling, c held
        @test !(grads[6] isa ChainRulesCore.AbstractThunk) && grads[6] isa AbstractArray
        # the entropy alone (a PPO entropy bonus) is not dropped
        grads = back(ChainRulesCore.Tangent{typeof(y)}(; entropy = gH))
        @test grads[3] ≈ numgrad(x -> token_forward(h, x, labels, rids, adv).entropy, logits, gH) atol = 1e-6 rtol = 1e-5
        @test grads[6] isa ChainRulesCore.AbstractZero
        # the response entropy has no derivative in the library: an error, not a zero
        @test_throws ErrorException back(ChainRulesCore.Tangent{typeof(y)}(; response_entropy = gH))
    end
else
    @info "ChainRulesCore not installed: rrule tests skipped"
end

if HAVE_FLUX
    @testset "Flux SAC-style policy through GaussianHead" begin
        obs_dim, act_dim, batch = 4, 2, 32
        trunk = Flux.Chain(Flux.Dense(obs_dim => 32, Flux.relu), Flux.Dense(32 => 2act_dim))
        head = GaussianHead(dim = act_dim, target_entropy = -Float64(act_dim), log_std_min = -5, log_std_max = 2)
        function policy(obs)
            h = trunk(obs)
            mu = h[1:act_dim, :]
            log_std = head(h[act_dim+1:end, :])         # the entropy floor, per column
            return mu, log_std
        end
        obs = randn(Float32, obs_dim, batch)
        mu, log_std = policy(obs)
        @test size(log_std) == (act_dim, batch) && eltype(log_std) == Float32
        @test all(entropy(head, log_std) .>= -act_dim - 1f-3)
        # Functors/Flux walk the model: the head stays the same object (no double free)
        model = Flux.Chain(trunk, head)
        @test Flux.f64(model)[2] === head && Flux.f32(model)[2] === head && Flux.cpu(model)[2] === head
        @test Flux.fmap(identity, model)[2] === head
        # an entropy in the loss has a gradient (a PPO bonus), not `nothing`
        bonus(m) = sum(entropy(head, head(m(obs)[act_dim+1:end, :])))
        gb = Flux.gradient(bonus, trunk)[1]
        @test gb !== nothing && any(!iszero, gb.layers[2].weight)
        # one SAC-like actor step: loss = E[-entropy-ish term + stand-in Q]
        loss(m) = begin
            h = m(obs)
            ls = head(h[act_dim+1:end, :])
            sum(abs2, h[1:act_dim, :]) / batch - sum(ls) / batch
        end
        opt = Flux.setup(Flux.Adam(1f-3), trunk)
        l0 = loss(trunk)
        grads = Flux.gradient(loss, trunk)
        @test grads[1] !== nothing
        Flux.update!(opt, trunk, grads[1])
        @test isfinite(loss(trunk))
        # the learned compensation follows the bounded policy's entropy
        update_delta!(head, -Float64(act_dim) - 0.5)
        @test delta(head) > 0
    end
else
    @info "Flux not installed: the Flux policy test is skipped"
end
