export * from "./dtype.js";
export { NDArray, array, zerosHost, shapeSize, type Shape, type Scalar, type NestedArray, type Complex } from "./ndarray.js";
export { DeviceArray } from "./device-array.js";
export * from "./errors.js";
