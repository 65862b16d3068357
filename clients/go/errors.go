package loft

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/loft-relay/loft/clients/go/loftv1"
)

// ErrorDomain is the `domain` of the google.rpc.ErrorInfo Loft attaches to
// every error.
const ErrorDomain = "loft.v1"

// ErrorInfo returns the google.rpc.ErrorInfo detail of Loft's domain carried
// by a gRPC error (also when wrapped), or nil.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info
		}
	}
	return nil
}

// ErrorReason returns why a call failed, as the ErrorReason constant: the
// wire reason "DESTINATION_URL_FORBIDDEN" is
// loftv1.ErrorReason_ERROR_REASON_DESTINATION_URL_FORBIDDEN. It returns
// ERROR_REASON_UNSPECIFIED for nil, for errors without Loft's ErrorInfo (a
// proxy's or the transport's) and for reasons newer than this client.
func ErrorReason(err error) loftv1.ErrorReason {
	info := ErrorInfo(err)
	if info == nil {
		return loftv1.ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	return loftv1.ErrorReason(loftv1.ErrorReason_value["ERROR_REASON_"+info.GetReason()])
}
