/**
 * Mesh, PartitionSpec and NamedSharding as values: what they accept, what
 * they refuse (naming what is wrong), their wire forms, and prefixes of
 * shardings over argument trees. Where shards land is checked against JAX
 * itself in test/session/sharding.test.ts.
 */
import assert from "node:assert/strict";
import { Mesh, NamedSharding, OpaqueSharding, P, PartitionSpec, SingleDeviceSharding, ShardingError, layoutFromWire } from "../../src/values/sharding.js";
import { prefixLeaves } from "../../src/values/prefix.js";

const refuses = (fn: () => unknown, re: RegExp) => assert.throws(fn, (e: unknown) => e instanceof ShardingError && re.test(e.message), String(re));

describe("Mesh, PartitionSpec, NamedSharding", () => {
  it("a Mesh lays device ids out along named axes, in C order; ids need not be dense", () => {
    const m = new Mesh([[2048, 2049], [0, 1]], ["proc", "dev"]);
    assert.deepEqual([m.deviceIds, m.axisSizes, m.axisTypes, m.shape], [[2048, 2049, 0, 1], [2, 2], ["Auto", "Auto"], { proc: 2, dev: 2 }]);
    assert.ok(Mesh.fromIds([2048, 2049, 0, 1], [2, 2], ["proc", "dev"]).equals(m));
    assert.deepEqual(m.devices, [[2048, 2049], [0, 1]]);
    assert.deepEqual(m.coords(3), [1, 1]);
    assert.equal(m.axisSize(["proc", "dev"]), 4);
    assert.ok(Mesh.fromWire(m.toWire()).equals(m));
    assert.equal(String(new Mesh([0, 1, 2, 3], "x")), "Mesh('x': 4, axis_types=(Auto,))");
  });

  it("refuses a ragged grid, repeated ids or names, and axes that do not match", () => {
    refuses(() => new Mesh([[0, 1], [2]], ["a", "b"]), /regular grid of shape \[2, 2\]/);
    refuses(() => new Mesh([0, 0], ["a"]), /distinct, got \[0, 0\]/);
    refuses(() => new Mesh([[0, 1]], ["a"]), /nest 2 deep but 1 axis names/);
    refuses(() => new Mesh([0, 1], ["a"], { axisTypes: ["Manual" as never] }), /axisTypes must be one of Auto, Explicit/);
    refuses(() => Mesh.fromIds([0, 1, 2], [2, 2], ["a", "b"]), /needs 4 device ids/);
    refuses(() => new Mesh([[0, 1], [2, 3]], ["a", "a"]), /distinct non-empty strings/);
    refuses(() => new Mesh([0, 1], "a").axisSize("z"), /'z' is not an axis of the mesh/);
  });

  it("a PartitionSpec names each mesh axis at most once; equality ignores trailing nulls, as JAX's reported specs drop them", () => {
    assert.deepEqual(P("a", null, ["b", "c"]).toWire(), [["a"], null, ["b", "c"]]);
    assert.equal(String(P("a", null, ["b", "c"])), "P('a', None, ('b', 'c'))");
    assert.ok(P("a", null).equals(P("a")) && !P("a").equals(P(null, "a")));
    assert.ok(PartitionSpec.fromWire([["a"], null]).equals(P("a")));
    refuses(() => P("a", "a"), /uses mesh axis 'a' twice/);
    refuses(() => P(3 as never), /entry 0 must be a mesh axis name/);
  });

  it("a NamedSharding gives shard shapes and shards, and refuses an axis it cannot split evenly", () => {
    const m = Mesh.fromIds([3, 2, 1, 0], [2, 2], ["a", "b"]);
    const s = new NamedSharding(m, P(null, ["b", "a"]));
    assert.deepEqual(s.shardShape([3, 8]), [3, 2]);
    assert.deepEqual(
      s.shards([3, 8]).map((x) => [x.device, x.index, x.replicaId]),
      [[3, [[0, 3], [0, 2]], 0], [2, [[0, 3], [4, 6]], 0], [1, [[0, 3], [2, 4]], 0], [0, [[0, 3], [6, 8]], 0]],
    );
    assert.deepEqual(new NamedSharding(m, P("a")).shards([2]).map((x) => x.replicaId), [0, 1, 0, 1]);
    assert.ok(new NamedSharding(m, P()).isFullyReplicated && !s.isFullyReplicated);
    refuses(() => s.shardShape([3, 6]), /splits axis 1 of an array of shape \[3, 6\] 4 ways, but 6 is not divisible by 4/);
    refuses(() => s.shardShape([8]), /has 2 entries but the array has rank 1/);
    refuses(() => new NamedSharding(m, P("z")), /names 'z', which is not an axis of Mesh/);
    assert.ok(NamedSharding.fromWire(s.toWire()).equals(s));
    assert.ok(!s.equals(new SingleDeviceSharding(3)) && new SingleDeviceSharding(3).equals(new SingleDeviceSharding(3)));
  });

  it("a layout without a mesh (a sharding JAX gives none) reads as an OpaqueSharding of its shards' devices", () => {
    const { sharding, shards } = layoutFromWire({ mesh: null, spec: null, shards: [[0, [[0, 2]], 0], [1, [[2, 4]], 0]] });
    assert.ok(sharding instanceof OpaqueSharding);
    assert.deepEqual([sharding.deviceIds, shards.map((s) => s.shape)], [[0, 1], [[2], [2]]]);
  });

  it("prefixLeaves spreads one entry over a whole subtree, and names what it cannot cover", () => {
    const isSpec = (x: unknown): x is PartitionSpec => x instanceof PartitionSpec;
    const args = [{ w: 1, b: [2, 3] }, 4, 5];
    assert.deepEqual(prefixLeaves(P("x"), args, isSpec, "inSpecs", "PartitionSpec").map(String), ["P('x')", "P('x')", "P('x')", "P('x')", "P('x')"]);
    assert.deepEqual(prefixLeaves([{ w: P(), b: P("x") }, null, P("y")], args, isSpec, "inSpecs", "PartitionSpec").map(String), ["P('x')", "P('x')", "P()", "null", "P('y')"]);
    refuses(() => prefixLeaves([P(), P()], args, isSpec, "inSpecs", "PartitionSpec"), /inSpecs has no entry for \[2\]/);
    refuses(() => prefixLeaves([P(), P(), P(), P()], args, isSpec, "inSpecs", "PartitionSpec"), /inSpecs\[3\] names nothing in the arguments/);
    refuses(() => prefixLeaves([{ w: P(), c: P() }, P(), P()], args, isSpec, "inSpecs", "PartitionSpec"), /no entry for \[0\]\['b'\]\[0\]/);
    refuses(() => prefixLeaves(["x"], [1], isSpec, "inSpecs", "PartitionSpec"), /inSpecs\[0\] is 'x', not a PartitionSpec or null/);
  });
});
