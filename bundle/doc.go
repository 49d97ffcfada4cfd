// Package bundle builds, verifies and exports result bundles: one archive
// file per finished execution, holding the execution record, its result,
// its result logs and any attachments, a manifest of their SHA-256 sums and
// the producing VM's signature over that manifest. It does no network I/O
// and knows nothing of libp2p beyond the node key that signs.
//
// # Archive format: tar.gz
//
// The archive is a gzip-compressed POSIX tar file, written
// deterministically: entries in a fixed order (MANIFEST.sha256, its
// signature, then the files in manifest order), every header with the
// bundle's creation time, mode 0644, owner 0:0, no user or group names, and
// a gzip header without name or time. The same content therefore gives the
// same bytes and the same SHA-256, so a bundle made twice is one bundle
// (DESIGN: "a bundle is accepted once"). tar.gz rather than zip because
// tar is streamed front to back (the manifest comes first and a verifier
// needs no seeking, so the archive can be checked while its blocks
// arrive), it has no second, possibly disagreeing, directory of names at
// the end as zip's central directory is, and every Unix system unpacks it
// with `tar -xzf`. Results and logs are JSON text: gzip shrinks them well.
//
// # Files of an exported bundle
//
//	bundle.tar.gz          the archive (ArchiveName)
//	bundle.tar.gz.sha256   the archive's own SHA-256, "<hex>  bundle.tar.gz\n" (sha256sum -c reads it)
//	MANIFEST.sha256        every content file's SHA-256, exactly as `sha256sum -c` reads it
//	MANIFEST.sha256.sig    the VM's signature over the manifest (below)
//	execution.json, result.json, result-logs/<id>.json, attachments/…   the content files
//	bundle.tar.gz.tsq/.tsr an RFC 3161 time-stamp request and token over the archive, if any
//
// `sha256sum -c MANIFEST.sha256` and `sha256sum -c bundle.tar.gz.sha256`
// succeed in that directory; `openssl ts -verify -in bundle.tar.gz.tsr
// -data bundle.tar.gz -CAfile <the authority's CA>` checks the time-stamp.
//
// # Signature file
//
// MANIFEST.sha256.sig is UTF-8 text, LF line ends, exactly five lines:
//
//	examnode-bundle-signature v1
//	execution: <execution ID>
//	created: <creation time, RFC 3339 in UTC with nanoseconds>
//	signer: <the VM's libp2p peer ID>
//	signature: <standard base64 of a 64-byte Ed25519 signature>
//
// The signature is over the bytes of the first four lines (each with its
// LF) followed immediately by the bytes of MANIFEST.sha256. The signer's
// Ed25519 public key is embedded in its peer ID (an identity multihash), so
// anyone can check the signature offline with nothing but the bundle.
package bundle
