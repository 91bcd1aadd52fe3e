// The prebuilt browser bundle of simple-peer (the package's main entry needs Node globals under Vite).
declare module 'simple-peer/simplepeer.min.js' {
  import SimplePeer from 'simple-peer';
  export default SimplePeer;
}
