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
